// IPv4 CIDR arithmetic for route tables.

/** The fewest CIDRs covering 0.0.0.0/0 minus `excluded`, in address order (how mihomo fills its route table). */
export function cidrComplement(excluded: readonly string[]): string[] {
  const ranges = excluded.map((cidr) => {
    const [addr = '', len = ''] = cidr.split('/');
    const start = addr.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
    return [start, start + 2 ** (32 - Number(len)) - 1] as const;
  });
  const dotted = (n: number) => [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');
  const routes: string[] = [];
  const cover = (start: number, len: number): void => {
    const end = start + 2 ** (32 - len) - 1;
    if (ranges.some(([s, e]) => s <= start && end <= e)) return;
    if (!ranges.some(([s, e]) => s <= end && start <= e)) {
      routes.push(`${dotted(start)}/${len}`);
      return;
    }
    cover(start, len + 1);
    cover(start + 2 ** (31 - len), len + 1);
  };
  cover(0, 0);
  return routes;
}
