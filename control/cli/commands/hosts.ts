import type { Command } from 'commander';
import { ListHostsResponse, type Host } from '../../../proto/gen/bpfleet/v1/control.js';
import { AttachmentStatus } from '../../../proto/gen/bpfleet/v1/agent.js';
import { outputOption, print, withControl, type Output } from '../output.js';

/** `bpfleet hosts`. */
export function registerHostCommands(program: Command): void {
  program.command('hosts')
    .description('list registered hosts, what each runs and where it lags')
    .addOption(outputOption())
    .addHelpText('after', `
Example:
  bpfleet hosts
  h1           127.0.0.1:40111      role=edge,zone=a     xdp:eth0=pass-counter@2.0.0(prog 2127)  LAG -
  h3           127.0.0.1:40113      role=edge,zone=b     xdp:eth0=pass-counter@1.0.0(prog 2090)  LAG xdp:eth0 pass-counter 1.0.0→2.0.0

LAG names each attachment where the host does not run the version the last succeeded
rollout whose selector matches it promoted (the fleet's desired version): an older
version, nothing, another module, or a BROKEN attachment. The leader moves such a host to
it unless a rollout of the module is active there; -o json has the details (lagging).`)
    .action(async (opts: { output: Output }, cmd: Command) => {
      await withControl(cmd, async (ctl) => {
        const res = await ctl.call('listHosts', {});
        print(opts.output, ListHostsResponse.toJSON(res), () => res.hosts.length
          ? res.hosts.map((h: Host) => {
            const running = h.attachments.map((a) => `${a.attachment}=${a.module}@${a.version}(${a.status === AttachmentStatus.ATTACHMENT_STATUS_BROKEN ? `BROKEN ${a.reason}` : `prog ${a.progId}`})`).join(' ') || '(nothing attached)';
            const labels = Object.entries(h.labels).map(([k, v]) => `${k}=${v}`).join(',');
            const lag = h.lagging.map((l) => `${l.attachment} ${l.module} ${l.runningVersion || '(nothing)'}→${l.desiredVersion}${l.reason === 'BROKEN' ? ' (broken)' : ''}`).join('; ') || '-';
            return `${h.name.padEnd(12)} ${h.address.padEnd(20)} ${labels.padEnd(20)} ${running}  LAG ${lag}`;
          }).join('\n')
          : 'no hosts registered');
      });
    });
}
