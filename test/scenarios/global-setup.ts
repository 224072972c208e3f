// vitest's main process exits a millisecond after Ctrl-C or SIGTERM, while its workers still tear
// their labs down. Here it waits for them: the suite returns only once every worker that owned a lab
// has torn it down and exited.
import { descendants, waitSync } from '../../lib/procs.ts';
import { isAlive, type ProcessRef, readRecords } from '../../lib/registry.ts';
import { deadline } from '../../lib/time.ts';

export default function setup(): void {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      const workers = new Set(descendants(process.pid).map((p) => p.pid));
      const owners = new Map<number, ProcessRef>();
      waitSync(() => {
        for (const r of readRecords()) {
          if (!workers.has(r.owner.pid) || owners.has(r.owner.pid) || !isAlive(r.owner)) continue;
          owners.set(r.owner.pid, r.owner);
          // sent to vitest alone (not to its process group), the signal must still reach the labs' owners
          process.kill(r.owner.pid, signal);
        }
        return ![...owners.values()].some(isAlive) && !readRecords().some((r) => workers.has(r.owner.pid) && isAlive(r.owner));
      }, deadline('teardown'));
    });
  }
}
