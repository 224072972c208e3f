// Errors keep execa's reason: a command with no exit code says why (not "exit null").
import { expect, test } from 'vitest';
import { CommandError, run, Transcript } from '../../lib/exec.ts';

async function failure(argv: string[], timeoutMs?: number): Promise<CommandError> {
  const err = await run(new Transcript(), undefined, argv, { timeoutMs }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(CommandError);
  return err as CommandError;
}

test('a missing tool fails with "command not found" and the command', async () => {
  const err = await failure(['netns-lab-no-such-tool', '--flag']);
  expect(err.exitCode).toBeNull();
  expect(err.reason).toBe('command not found');
  expect(err.message).toBe('command failed (command not found): netns-lab-no-such-tool --flag');
});

test('a command past its deadline fails with "timed out"', async () => {
  const err = await failure(['sleep', '5'], 50);
  expect(err.reason).toBe('timed out');
  expect(err.message).toMatch(/^command failed \(timed out\): sleep 5/);
});

test('a non-zero exit keeps its code and stderr', async () => {
  const err = await failure(['sh', '-c', 'echo oops >&2; exit 3']);
  expect(err.exitCode).toBe(3);
  expect(err.reason).toBeUndefined();
  expect(err.message).toBe("command failed (exit 3): sh -c 'echo oops >&2; exit 3'\noops");
});
