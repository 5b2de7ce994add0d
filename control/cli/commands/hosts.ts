import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { DrainState, HostDrainResponse, ListHostsResponse, type Host, type HostDrain } from '../../../proto/gen/bpfleet/v1/control.js';
import { drainProgress, drainStateName } from '../../day2/drain-rules.js';
import type { Control } from '../client.js';
import { EXIT } from '../exit-codes.js';
import { outputOption, parseTimeout, print, withControl, type Output } from '../output.js';
import { AttachmentStatus } from '../../../proto/gen/bpfleet/v1/agent.js';

// Between looks at a drain the CLI waits for.
const POLL_MS = 500;

/** One line per host: registered hosts with what they run, then drained hosts no longer registered. */
export function hostLines(res: ListHostsResponse): string[] {
  const drains = new Map(res.drains.map((d) => [d.host, d]));
  const state = (d: HostDrain | undefined): string => (d ? `[${drainStateName(d.state)}] ` : '');
  const lines = res.hosts.map((h: Host) => {
    const running = h.attachments.map((a) => `${a.attachment}=${a.module}@${a.version}(${a.status === AttachmentStatus.ATTACHMENT_STATUS_BROKEN ? `BROKEN ${a.reason}` : `prog ${a.progId}`}${a.unverified ? `, UNVERIFIED ${a.unverified}` : ''})`).join(' ') || '(nothing attached)';
    const labels = Object.entries(h.labels).map(([k, v]) => `${k}=${v}`).join(',');
    // A refused registration is never planned; its address and labels are the claimant's.
    if (h.refused) return `${h.name.padEnd(12)} ${h.address.padEnd(20)} ${labels.padEnd(20)} REFUSED ${h.refused}: claims to be "${h.claimedName}", never planned`;
    const lag = h.lagging.map((l) => `${l.attachment} ${l.module} ${l.runningVersion || '(nothing)'}→${l.desiredVersion}${l.reason === 'BROKEN' ? ' (broken)' : ''}`).join('; ') || '-';
    return `${h.name.padEnd(12)} ${h.address.padEnd(20)} ${labels.padEnd(20)} ${state(drains.get(h.name))}${running}  LAG ${lag}`;
  });
  const registered = new Set(res.hosts.map((h) => h.name));
  for (const d of res.drains) {
    if (!registered.has(d.host)) lines.push(`${d.host.padEnd(12)} ${'(not registered)'.padEnd(20)} ${''.padEnd(20)} ${state(d)}${d.message}`);
  }
  return lines;
}

/** The host's drain once it reaches `until` (or any later state), null when `timeoutMs` passes first (0: no limit). */
async function waitForDrain(ctl: Control, host: string, until: DrainState, timeoutMs: number): Promise<HostDrain | null> {
  const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : Infinity;
  for (;;) {
    const res = await ctl.call('listHosts', {});
    const drain = res.drains.find((d) => d.host === host);
    if (drain && drainProgress(drain.state) >= drainProgress(until)) return drain;
    if (Date.now() + POLL_MS > deadline) return null;
    await sleep(POLL_MS);
  }
}

/**
 * The output format of a subcommand: `hosts` takes -o itself (for the listing), and commander
 * gives an option both a command and its parent have to the parent, wherever it is written.
 */
function outputOf(cmd: Command): Output {
  return cmd.getOptionValueSource('output') === 'cli' ? cmd.opts().output as Output : (cmd.parent?.opts().output ?? 'text') as Output;
}

function drainLine(d: HostDrain): string {
  return `${d.host}: ${drainStateName(d.state)}${d.decommission ? ' (decommission)' : ''} — ${d.message}`;
}

/** `bpfleet hosts [list] | drain | undrain | decommission`. */
export function registerHostCommands(program: Command): void {
  const hosts = program.command('hosts')
    .description('list registered hosts, what each runs and where it lags; drain, undrain and decommission them')
    .addOption(outputOption())
    .addHelpText('after', `
Example:
  bpfleet hosts
  h1           127.0.0.1:40111      role=edge,zone=a     xdp:eth0=pass-counter@2.0.0(prog 2127)  LAG -
  h2           127.0.0.1:40112      role=edge,zone=a     [drained] (nothing attached)  LAG -
  h3           127.0.0.1:40113      role=edge,zone=b     xdp:eth0=pass-counter@1.0.0(prog 2090)  LAG xdp:eth0 pass-counter 1.0.0→2.0.0

LAG names each attachment where the host does not run the version the last succeeded
rollout whose selector matches it promoted (the fleet's desired version): an older
version, nothing, another module, or a BROKEN attachment. The leader moves such a host to
it unless a rollout of the module is active there; -o json has the details (lagging).

A drained host is marked [draining], [drained] or [decommissioned]; a decommissioned
host is listed as (not registered) until an agent registers under its name again.

A registration whose name differs from its etcd key (NAME_MISMATCH), or is another
host's name (DUPLICATE_NAME), is listed under its key's name, marked REFUSED, and never
planned; -o json carries it as "refused" and "claimedName". A program adopted after an
agent restart that fails the agent's signature policy is marked UNVERIFIED.`)
    .action(list);

  const waitOptions = (cmd: Command): Command => cmd
    .option('--reason <text>', 'why, for the audit log')
    .option('--no-wait', 'return once the drain is recorded, without waiting for the host to run nothing')
    .option('--timeout <duration>', 'how long to wait (0: no limit)', '2m')
    .addOption(outputOption());

  waitOptions(hosts.command('drain')
    .description('remove every bpfleet program from a host and keep it out of new rollouts')
    .argument('<host>', 'host name, as `bpfleet hosts` lists it'))
    .addHelpText('after', `
What it does:
  The drain is recorded in etcd and in the audit log; the leading controller then writes a
  removal intent for each attachment the host runs (a compare-and-swap: only the program
  the host reported is detached) and asks the agent to apply it. The host shows as
  [draining], then [drained] once its agent reports running nothing. From then on no new
  rollout plans it (a rollout whose selector matches only drained hosts fails at planning,
  saying so) until \`bpfleet hosts undrain\`.

Refused (exit 2, HOST_IN_ROLLOUT) while an unfinished rollout includes the host, or has
not been planned yet and its selector matches it: wait for it (\`bpfleet rollout status
<id>\`) or abort it. A host whose agent is down stays [draining]: its agent removes the
programs from its intents in etcd when it starts again.

Exit codes: 0 drained (or already drained/draining with --no-wait), 2 refused,
5 --timeout passed first, 7 no such host.

Examples:
  bpfleet hosts drain h3 --reason "kernel upgrade"
  bpfleet hosts drain h3 --no-wait -o json`)
    .action((host: string, opts: WaitOpts, cmd: Command) => drainCommand(cmd, host, opts, false));

  waitOptions(hosts.command('decommission')
    .description('drain a host, then forget it: its registration, observed state and intents are deleted')
    .argument('<host>', 'host name'))
    .addHelpText('after', `
What it does:
  A drain (see \`bpfleet hosts drain --help\`), and once the host runs nothing, its
  registration, its observed state and its intents are deleted from etcd. A host whose
  agent is gone is forgotten at once (nobody could remove its programs; they stay in its
  kernel). The drain record is kept: if an agent registers under the name again it is
  drained again (its leftover programs removed) and never planned into a rollout until
  \`bpfleet hosts undrain\`.

Exit codes as for drain. Example:
  systemctl stop bpfleet-agent     # on the host, once drained: or decommission first, then stop
  bpfleet hosts decommission h3 --reason "hardware returned"`)
    .action((host: string, opts: WaitOpts, cmd: Command) => drainCommand(cmd, host, opts, true));

  hosts.command('undrain')
    .description('let a drained host be planned into rollouts again')
    .argument('<host>', 'host name')
    .option('--reason <text>', 'why, for the audit log')
    .addOption(outputOption())
    .addHelpText('after', `
Deletes the host's drain record. Programs the drain removed stay removed: roll a version out
to put one back. Undrain a decommissioned host to forget it for good (its record is the only
thing left), or before its agent comes back to let it join rollouts.

Exit codes: 0 undrained (or was not drained), 7 neither registered nor drained.
Example:
  bpfleet hosts undrain h3`)
    .action(async (host: string, opts: { reason?: string }, cmd: Command) => {
      await withControl(cmd, async (ctl) => {
        const res = await ctl.call('undrainHost', { host, reason: opts.reason ?? '' });
        print(outputOf(cmd), HostDrainResponse.toJSON(res), () => (res.changed ? `${host}: undrained; new rollouts may plan it` : `${host}: was not drained`));
      });
    });
}

interface WaitOpts {
  reason?: string;
  wait: boolean;
  timeout: string;
}

async function list(opts: { output: Output }, cmd: Command): Promise<void> {
  await withControl(cmd, async (ctl) => {
    const res = await ctl.call('listHosts', {});
    const lines = hostLines(res);
    print(opts.output, ListHostsResponse.toJSON(res), () => (lines.length ? lines.join('\n') : 'no hosts registered'));
  });
}

async function drainCommand(cmd: Command, host: string, opts: WaitOpts, decommission: boolean): Promise<void> {
  const timeoutMs = parseTimeout(opts.timeout);
  await withControl(cmd, async (ctl) => {
    const req = { host, reason: opts.reason ?? '' };
    const res = decommission ? await ctl.call('decommissionHost', req) : await ctl.call('drainHost', req);
    let drain = res.drain!;
    if (opts.wait) {
      const until = decommission ? DrainState.DRAIN_STATE_DECOMMISSIONED : DrainState.DRAIN_STATE_DRAINED;
      const reached = await waitForDrain(ctl, host, until, timeoutMs);
      if (!reached) {
        const now = (await ctl.call('listHosts', {})).drains.find((d) => d.host === host) ?? drain;
        process.stderr.write(`bpfleet: ${host} is still ${drainStateName(now.state)} after ${opts.timeout}: ${now.message}\n`);
        process.exitCode = EXIT.TIMEOUT;
        drain = now;
      } else drain = reached;
    }
    print(outputOf(cmd), HostDrainResponse.toJSON({ drain, changed: res.changed }), () => `${res.changed ? '' : '(already requested) '}${drainLine(drain)}`);
  });
}
