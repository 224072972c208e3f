// `netns-lab new <name>`: a notebook skeleton that runs and verifies as it is (a firewall drop and its
// removal), to be rewritten into the failure being reproduced.

/** The skeleton's source: TypeScript importing the sources in this repository, JavaScript importing the package elsewhere. */
export function skeleton(name: string, opts: { from: string; typescript: boolean }): string {
  const ctx = opts.typescript ? '<{ client: Host; server: Host; nft: Nft }>' : '';
  const types = opts.typescript ? ', type Host' : '';
  return `/*
 * ${name}: <what breaks, in one line>.
 * Write-up: <where the failure was described>.
 *
 * The picture below (\`picture\`) is the topology; then the bug in two sentences: what the kernel
 * does, and why it fails. This skeleton drops the client's SYN in the server's input hook and the
 * fix accepts it ahead of the drop: replace each part with the failure you reproduce, then run
 * \`netns-lab verify\` on this file: every claim must fail without the fix or with it applied first.
 */
import { defineScenario, describeProbe, Nft, poll, serve, tcp, veth${types} } from '${opts.from}';

const SERVER = '10.0.0.2';

export default defineScenario${ctx}({
  name: '${name}',
  title: '<the failure, as a title>',
  writeup: '<the write-up>',
  breaks: '<what breaks, one line>',
  fixes: '<the fix, one line>',
  picture: \`
  client                  server
  eth0 10.0.0.1/24 ══ eth0 \${SERVER}/24
                           :8080 echo\`,
  requires: { tools: ['ip', 'nft', 'socat'] },

  async topology(lab) {
    const { client, server } = await lab.hostsNamed('client', 'server');
    await veth([client, 'eth0', '10.0.0.1/24'], [server, 'eth0', \`\${SERVER}/24\`]);
    await serve(server, 'tcp', 8080, 'echo');
    return { client, server, nft: new Nft(server) };
  },

  // the configuration that fails
  async break({ nft }) {
    await nft.apply(\`
      table inet lab {
        chain input {
          type filter hook input priority 0; policy accept;
          tcp dport 8080 counter drop comment "drop-8080"
        }
      }\`);
  },

  // what proves the breakage positively: the rule that dropped the SYN counted it (a timeout alone proves nothing)
  async evidence({ client, nft }, check) {
    // the probe ends as soon as the drop has counted: a verdict decided by evidence, not by a timeout
    const counted = poll(async () => (await nft.counter('drop-8080')).packets > 0);
    const probe = await tcp(client, \`\${SERVER}:8080\`, { until: counted });
    const dropped = await nft.counter('drop-8080');
    check.that(dropped.packets > 0, 'the input hook drops the SYN to :8080', \`drop-8080 counted \${dropped.packets}; \${describeProbe(probe)}\`);
    check.that(!probe.echoed, 'the client gets no answer', describeProbe(probe));
  },

  // exactly the documented fix; verify also applies it before the break, so it must not depend on the break's state
  async fix({ nft }) {
    await nft.apply(\`
      table inet lab {
        chain input { type filter hook input priority 0; policy accept; }
      }
      insert rule inet lab input ip saddr 10.0.0.1 tcp dport 8080 counter accept comment "allow-client"\`);
  },

  // connectivity, with the token echoed end to end, and the fix's own rule as the reason
  async proof({ client, nft }, check) {
    const probe = await tcp(client, \`\${SERVER}:8080\`);
    check.that(probe.echoed, "the server echoes the client's token", describeProbe(probe));
    const allowed = await nft.counter('allow-client', { absentIsZero: true });
    check.that(allowed.packets > 0, 'the accept ahead of the drop let it in', \`allow-client counted \${allowed.packets}\`);
  },
});
`;
}
