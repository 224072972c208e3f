// What a step of a run's transcript is, told by its kind and its fields, never by its note's wording:
// the one place demos, diagrams and demo scripts ask it. A new kind of evidence is named here.
import type { Step } from './exec.ts';

/** A packet capture (tcpdump): its output is packets. */
export const isCapture = (s: Step) => s.kind === 'capture';
/** An event stream (conntrack -E, nft monitor trace): its output is one event per line. */
export const isEventStream = (s: Step) => s.kind === 'event stream';
export const isTracer = (s: Step) => s.kind === 'tracer';
/** A probe's client: a spawned one (socat), or a command whose outcome the demo script checks (curl). */
export const isProbe = (s: Step) => s.kind === 'probe' || s.shell?.probe !== undefined;
/** A probe that only made traffic to watch: stopped once its packet showed, its outcome is no claim. */
export const isWatch = (s: Step) => s.kind === 'probe' && s.shell?.probe === undefined;
/** A verdict: a note with no command. */
export const isVerdict = (s: Step) => !s.line && !!s.note;

const CAPTURE_ON = 'capture on ';
/** A capture's note, which names its interface: what a reader sees, and where a diagram puts its packets. */
export const captureNote = (iface: string) => `${CAPTURE_ON}${iface}`;
export const captureInterface = (s: Step) => s.note!.slice(CAPTURE_ON.length).split(' ')[0]!;
