import type { Command } from 'commander';
import { ListHostsResponse, type Host } from '../../../proto/gen/bpfleet/v1/control.js';
import { outputOption, print, withControl, type Output } from '../output.js';

/** `bpfleet hosts`. */
export function registerHostCommands(program: Command): void {
  program.command('hosts')
    .description('list registered hosts and the module version each one runs')
    .addOption(outputOption())
    .addHelpText('after', `
Example:
  bpfleet hosts
  h1           127.0.0.1:40111      role=edge,zone=a     xdp:eth0=pass-counter@2.0.0(prog 2127)
  h9           127.0.0.1:40119      role=edge            REFUSED DUPLICATE_NAME: claims to be "h1", never planned

A registration whose name differs from its etcd key (NAME_MISMATCH), or is another
host's name (DUPLICATE_NAME), is listed under its key's name, marked REFUSED, and never
planned; --output json carries it as "refused" and "claimedName".`)
    .action(async (opts: { output: Output }, cmd: Command) => {
      await withControl(cmd, async (ctl) => {
        const res = await ctl.call('listHosts', {});
        print(opts.output, ListHostsResponse.toJSON(res), () => res.hosts.length
          ? res.hosts.map((h: Host) => {
            const running = h.attachments.map((a) => `${a.attachment}=${a.module}@${a.version}(prog ${a.progId}${a.unverified ? `, UNVERIFIED ${a.unverified}` : ''})`).join(' ') || '(nothing attached)';
            const labels = Object.entries(h.labels).map(([k, v]) => `${k}=${v}`).join(',');
            // A refused registration is never planned; its address and labels are the claimant's.
            if (h.refused) return `${h.name.padEnd(12)} ${h.address.padEnd(20)} ${labels.padEnd(20)} REFUSED ${h.refused}: claims to be "${h.claimedName}", never planned`;
            return `${h.name.padEnd(12)} ${h.address.padEnd(20)} ${labels.padEnd(20)} ${running}`;
          }).join('\n')
          : 'no hosts registered');
      });
    });
}
