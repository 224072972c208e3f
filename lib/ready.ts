// When a helper is ready, said once: the lab's wait and the demo script's shell condition come from one object.
import type { Background } from './background.ts';
import { inNetns, shellLine, shellQuote } from './exec.ts';
import type { Host } from './topology.ts';
import { waitFor } from './wait.ts';

export interface Readiness {
  /** The demo script's condition, a shell test: `$LOG` is the helper's output, `$LOG.pid` its pid. */
  shell: string;
  /** The lab's wait for the same condition; throws, saying what it waited for, at the deadline. */
  wait(helper: Background, timeoutMs: number): Promise<void>;
}

/** The helper prints a line matching `pattern`: an extended regular expression read alike by JavaScript and `grep -E`. */
export function printed(pattern: string): Readiness {
  const re = new RegExp(pattern);
  return {
    shell: `grep -Eq ${shellQuote(pattern)} "$LOG"`,
    async wait(helper, timeoutMs) {
      if (!(await helper.waitForLine((l) => re.test(l), timeoutMs)))
        throw new Error(`${helper.proc.line} did not become ready (a line matching /${pattern}/): ${helper.text() || '(no output)'}`);
    },
  };
}

/**
 * A command in `host` prints a line matching `pattern`, given the helper's pid where the pattern names
 * it (the kernel's own record of a helper that prints nothing). No `"` or `$` in the pattern.
 */
export function shows(host: Host, argv: string[], pattern: (pid: string) => string): Readiness {
  return {
    shell: `${shellLine(inNetns(host.ns, argv))} | grep -Eq "${pattern('$(cat "$LOG.pid")')}"`,
    async wait(helper, timeoutMs) {
      const re = new RegExp(pattern(String(helper.pid)), 'm');
      await waitFor(
        `${argv.join(' ')} in ${host.name} to show /${re.source}/`,
        async () => {
          if (helper.exited) throw new Error(`${helper.proc.line} exited: ${helper.text() || '(no output)'}`);
          const r = await host.exec(argv, { check: false, quiet: true });
          return r.ok && re.test(r.stdout);
        },
        { timeoutMs },
      );
    },
  };
}
