import { expect, test } from 'vitest';
import { cidrComplement } from '../../lib/routes.ts';
import { ROUTE_EXCLUDE } from '../../scenarios/tun-synack.ts';

test("mihomo's table 2022 is 0.0.0.0/0 minus route-exclude-address, as the write-up lists it", () => {
  const routes = cidrComplement(ROUTE_EXCLUDE);
  expect(routes.slice(0, 4)).toEqual(['1.0.0.0/8', '2.0.0.0/7', '4.0.0.0/6', '8.0.0.0/7']);
  expect(routes.slice(-3)).toEqual(['200.0.0.0/5', '208.0.0.0/4', '224.0.0.0/3']);
  expect(routes).toHaveLength(52);
  expect(cidrComplement([])).toEqual(['0.0.0.0/0']);
});
