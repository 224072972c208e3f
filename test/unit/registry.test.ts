// The reaper takes only what a record proves is a dead run's own, and never trusts state others can write.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, test } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'netns-lab-state-'));
process.env.NETNS_LAB_STATE_DIR = dir;
const { cleanPlan, OWN_PIDNS, processRef, readState, ensureStateDir, UntrustedState } = await import('../../lib/registry.ts');

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const put = (file: string, content: unknown, mode = 0o600) => {
  writeFileSync(join(dir, file), typeof content === 'string' ? content : JSON.stringify(content), { mode });
  chmodSync(join(dir, file), mode);
};
/** A pid no process has (beyond pid_max). */
const dead = { pid: 4_194_305, start: '1' };
const record = (id: string, extra: object = {}) => ({
  id,
  scenario: 'toy',
  owner: dead,
  pidns: OWN_PIDNS,
  namespaces: [`nl-${id}-a`],
  processes: [],
  ...extra,
});

beforeEach(() => {
  rmSync(dir, { recursive: true, force: true });
  ensureStateDir(dir);
});

describe('records', () => {
  test('a null record, one without an owner, or one claiming namespaces not named after its id is refused, not fatal', () => {
    put('aaaaaa.json', 'null');
    put('bbbbbb.json', { ...record('bbbbbb'), owner: undefined });
    put('cccccc.json', { ...record('cccccc'), namespaces: ['prod'] });
    put('dddddd.json', '{half');
    put('eeeeee.json', record('ffffff'));
    const { records, refused } = readState();
    expect(records).toEqual([]);
    expect(refused.map((r) => [r.file, r.why])).toEqual([
      ['aaaaaa.json', 'not a record'],
      ['bbbbbb.json', 'no owner'],
      ['cccccc.json', 'namespaces not named after its id'],
      ['dddddd.json', expect.stringMatching(/JSON/)],
      ['eeeeee.json', 'no valid id'],
    ]);
  });

  test('a record others can write is refused', () => {
    put('aaaaaa.json', record('aaaaaa'), 0o666);
    expect(readState().refused).toEqual([{ file: 'aaaaaa.json', why: 'mode 666, writable by others' }]);
  });

  test('a state directory others can write is refused', () => {
    chmodSync(dir, 0o777);
    expect(() => ensureStateDir(dir)).toThrow(UntrustedState);
    expect(() => ensureStateDir(dir)).toThrow(/mode 777, writable by others/);
  });
});

describe('what clean takes', () => {
  test('a dead run, not a live one, not a kept one unless asked, not one whose owner lives in another PID namespace', () => {
    put('aaaaaa.json', record('aaaaaa'));
    put('bbbbbb.json', record('bbbbbb', { owner: processRef(process.pid) }));
    put('cccccc.json', record('cccccc', { kept: true }));
    put('dddddd.json', record('dddddd', { pidns: 'pid:[1]' }));
    const decide = (opts = {}) => Object.fromEntries(cleanPlan(opts).plans.map((p) => [p.record.id, p.remove]));
    expect(decide()).toEqual({ aaaaaa: true, bbbbbb: false, cccccc: false, dddddd: false });
    expect(decide({ kept: true })).toEqual({ aaaaaa: true, bbbbbb: false, cccccc: true, dddddd: false });
    expect(decide({ ids: ['cccccc'] })).toEqual({ aaaaaa: false, bbbbbb: false, cccccc: true, dddddd: false });
    expect(cleanPlan().plans.find((p) => p.record.id === 'dddddd')?.why).toMatch(/another PID namespace/);
    // named and forced: the caller vouches that the container is gone
    expect(decide({ ids: ['dddddd'], force: true })).toEqual({ aaaaaa: false, bbbbbb: false, cccccc: false, dddddd: true });
    expect(decide({ ids: ['bbbbbb'], force: true })).toEqual({ aaaaaa: false, bbbbbb: false, cccccc: false, dddddd: false });
  });
});
