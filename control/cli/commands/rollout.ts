import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import {
  GetRolloutHistoryResponse,
  GetRolloutHostsResponse,
  ListRolloutsResponse,
  RolloutVerbResponse,
  type RolloutHistoryEntry,
} from '../../../proto/gen/bpfleet/v1/control.js';
import { Rollout, RolloutPhase, type HostPhase, type HostProgress } from '../../../proto/gen/bpfleet/v1/rollout.js';
import { parseRolloutSpec, specToInput } from '../../rollout/spec.js';
import { HOST_PHASES, hostPhaseName, isFinal, phaseName } from '../../rollout/vocabulary.js';
import type { Control } from '../client.js';
import { EXIT } from '../exit-codes.js';
import { exitCodeFor } from '../exit-for.js';
import { inert } from '../inert.js';
import { byWaveThenHost, follow } from '../follow.js';
import { LivePainter, liveView, statusKey, statusLine } from '../live-view.js';
import { outputOption, parseTimeout, print, withControl, type Output } from '../output.js';
import { BpfleetError } from '../../../common/errors.js';
import { changeLines, describeRollout } from '../rollout-view.js';

const settled = (r: Rollout): boolean => isFinal(r) || r.status?.phase === RolloutPhase.ROLLOUT_PHASE_PAUSED;

/**
 * How a followed rollout is shown: `live` redraws a picture in place (a person at a
 * terminal), `changes` appends a line per change (logs, pipes), `status` appends a line per
 * change of phase, step or host counts (CI).
 */
export type FollowView = 'live' | 'changes' | 'status';

const EXIT_HELP = `
Exit codes: 0 succeeded, 3 rolled back, 4 failed or aborted, 5 timeout, 6 paused,
2 usage or refused, 7 not found, 1 error or no replica reachable.`;

/**
 * Follows a rollout until it ends or pauses and returns the exit code for its outcome
 * (EXIT.TIMEOUT when `timeoutMs` passes first).
 */
export async function followRollout(ctl: Control, id: string, opts: { format: Output; timeoutMs: number; view: FollowView }): Promise<number> {
  const text = opts.format === 'text';
  const painter = text && opts.view === 'live' ? new LivePainter(process.stdout) : null;
  let prev: Rollout | null = null;
  let lastKey = '';
  const ticker = painter ? setInterval(() => prev && painter.paint(liveView(prev, Date.now())), 1000) : undefined;
  try {
    const result = await follow(ctl, id, {
      timeoutMs: opts.timeoutMs,
      until: settled,
      onUpdate: (r) => {
        if (painter) painter.paint(liveView(r, Date.now()));
        else if (text && opts.view === 'changes') for (const line of changeLines(prev, r)) process.stdout.write(`${inert(line)}\n`);
        else if (text && statusKey(r) !== lastKey) {
          lastKey = statusKey(r);
          process.stdout.write(`${inert(statusLine(r))}\n`);
        }
        prev = r;
      },
      onReconnect: (err, next) => process.stderr.write(`bpfleet: lost the watch (${err.code}: ${inert(err.message)}); following on ${next}\n`),
    });
    const last = result.last;
    if (!text && last) print(opts.format, Rollout.toJSON(last), () => '');
    if (result.how === 'timeout') {
      process.stderr.write(`bpfleet: timed out after ${opts.timeoutMs / 1000}s; rollout ${id} is ${phaseName(last?.status?.phase)}\n`);
      return EXIT.TIMEOUT;
    }
    const code = exitCodeFor(last?.status?.phase);
    if (painter && last) process.stdout.write(`rollout ${id} ${phaseName(last.status?.phase)} (exit ${code})\n`);
    return code;
  } finally {
    clearInterval(ticker);
  }
}

interface VerbOptions {
  reason?: string;
  wait: boolean;
  timeout: string;
  output: Output;
}

function registerVerb(rollout: Command, name: 'pause' | 'resume' | 'promote' | 'abort', method: 'pauseRollout' | 'resumeRollout' | 'promoteRollout' | 'abortRollout', description: string, help: string): void {
  rollout.command(name)
    .description(description)
    .argument('<id>', 'rollout id')
    .option('--reason <text>', 'why, for the audit log')
    .option('--no-wait', 'return once the request is recorded, without waiting for the controller to act on it')
    .option('--timeout <duration>', 'how long to wait for the controller to act on the request (exit 5 after)', '30s')
    .addOption(outputOption())
    .addHelpText('after', help)
    .action(async (id: string, opts: VerbOptions, cmd: Command) => {
      const timeoutMs = parseTimeout(opts.timeout);
      await withControl(cmd, async (ctl) => {
        const res = await ctl.call(method, { id, reason: opts.reason ?? '' });
        const req = res.request;
        if (!req) {
          print(opts.output, RolloutVerbResponse.toJSON(res), () => `rollout ${id}: nothing to ${name}; it is ${phaseName(res.rollout?.status?.phase)}${res.rollout?.status?.promoted ? ' and promoted' : ''}`);
          return;
        }
        if (!opts.wait) {
          print(opts.output, RolloutVerbResponse.toJSON(res), () => `${name} requested (request ${req.seq}); the leading controller acts on it next`);
          return;
        }
        const acted = (r: Rollout) => (r.status?.observedRequest ?? 0) >= req.seq || isFinal(r);
        const result = await follow(ctl, id, { timeoutMs, until: acted, onUpdate: () => undefined });
        const now = result.last;
        if (!now || !acted(now)) {
          process.stderr.write(`bpfleet: ${name} recorded (request ${req.seq}), but no controller acted on it within ${opts.timeout}; is a control plane replica leading?\n`);
          process.exitCode = EXIT.TIMEOUT;
          return;
        }
        print(opts.output, RolloutVerbResponse.toJSON({ rollout: now, request: req }), () => statusLine(now));
        const outcome = now.status?.requestOutcomes.find((o) => o.seq === req.seq);
        if (!outcome || !outcome.applied) {
          const why = outcome ? `${outcome.reason}: ${outcome.message}` : `the rollout ended (${phaseName(now.status?.phase)}) before the controller acted on it`;
          process.stderr.write(`bpfleet: ${name} was recorded (request ${req.seq}) but not applied: ${why}\n`);
          process.exitCode = EXIT.NOT_APPLIED;
        }
      });
    });
}

function historyText(entries: readonly RolloutHistoryEntry[]): string {
  if (!entries.length) return 'no rollouts yet';
  const out: string[] = [];
  for (const e of entries) {
    const from = e.fromVersions.map((v) => v || '(nothing)').join(',') || '?';
    const ended = e.finishedAt ? ` → ${e.finishedAt.slice(11, 19)}` : ' (running)';
    out.push(`${e.id}  ${e.module} ${from} → ${e.version} on ${e.attachment}  ${phaseName(e.phase).toUpperCase()}  ${e.createdAt.slice(0, 19).replace('T', ' ')}${ended}  by ${e.createdBy}${e.undoOf ? `  (undoes ${e.undoOf})` : ''}`);
    if (e.message) out.push(`    ${e.message}`);
    for (const ev of e.events) {
      if (ev.action === 'rollout.create') continue;
      out.push(`    ${ev.at.slice(11, 19)} ${ev.action.replace(/^rollout\./, '')} by ${ev.actor}${ev.detail ? `  ${ev.detail}` : ''}`);
    }
  }
  return out.join('\n');
}

/** `bpfleet rollout create|get|list|status|pause|resume|promote|abort|undo|history`. */
export function registerRolloutCommands(program: Command): void {
  const rollout = program.command('rollout').description('create, follow and inspect rollouts');
  rollout.command('create')
    .description('start a rollout from a spec file')
    .requiredOption('-f, --file <spec>', 'rollout spec (YAML); "-" reads standard input')
    .option('--wait', 'follow the rollout and exit with its outcome (0 succeeded, 3 rolled back, 4 failed)')
    .option('--timeout <duration>', 'with --wait: give up after this long (exit 5); 0 waits forever', '10m')
    .addOption(outputOption())
    .addHelpText('after', `
A spec:
  module: pass-counter
  version: 2.0.0
  attachment: xdp:eth0
  selector: {role: edge}      # optional: hosts whose labels match
  steps:
    - canary: 1               # 1 host on the new version
    - bake: 10s               # wait, then compare canary vs baseline telemetry
    - percent: 100            # everyone else
  analysis:
    interval: 1s
    minSamples: 3
    metrics: [{name: drop_rate, max: 0.05, maxIncrease: 0.02}]
  onFailure: rollback         # or halt`)
    .action(async (opts: { file: string; wait?: boolean; timeout: string; output: Output }, cmd: Command) => {
      const text = opts.file === '-' ? await readStdin() : await readFile(opts.file, 'utf8');
      const spec = parseRolloutSpec(text);
      const timeoutMs = parseTimeout(opts.timeout);
      await withControl(cmd, async (ctl) => {
        const created = await ctl.call('createRollout', { spec });
        if (!opts.wait) {
          print(opts.output, Rollout.toJSON(created), () => `created rollout ${created.id}\nfollow it with: bpfleet rollout get ${created.id} --watch`);
          return;
        }
        process.exitCode = await followRollout(ctl, created.id, { format: opts.output, timeoutMs, view: 'changes' });
      });
    });
  rollout.command('get')
    .description('show a rollout: steps, hosts, analyses with their numbers')
    .argument('<id>', 'rollout id')
    .option('-w, --watch', 'follow it until it ends or pauses; exit code as for `rollout status`')
    .option('--timeout <duration>', 'with --watch: give up after this long (exit 5)', '0')
    .addOption(outputOption())
    .addHelpText('after', `
Examples:
  bpfleet rollout get <id>              # steps, hosts, every analysis with its numbers
  bpfleet rollout get <id> -o yaml      # everything, with the spec as you would write it
  bpfleet rollout get <id> --watch      # on a terminal: steps, a progress bar per wave and
                                        # the latest verdicts, redrawn in place; piped: a line
                                        # per change. Exits when the rollout ends or pauses:
                                        # 0 succeeded, 3 rolled back, 4 failed/aborted, 6 paused`)
    .action(async (id: string, opts: { watch?: boolean; timeout: string; output: Output }, cmd: Command) => {
      await withControl(cmd, async (ctl) => {
        if (opts.watch) {
          const view = process.stdout.isTTY ? 'live' : 'changes';
          process.exitCode = await followRollout(ctl, id, { format: opts.output, timeoutMs: parseTimeout(opts.timeout), view });
          return;
        }
        const r = await withEveryHost(ctl, await ctl.call('getRollout', { id }));
        print(opts.output, { ...(Rollout.toJSON(r) as object), specYaml: specToInput(r.spec!) }, () => describeRollout(r));
      });
    });
  rollout.command('hosts')
    .description("list a rollout's hosts with their progress, a page at a time from the server")
    .argument('<id>', 'rollout id')
    .option('--phase <phases>', 'only hosts in these phases, comma-separated: pending, updating, updated, failed, rolling-back, rolled-back, restore-failed')
    .option('--limit <n>', 'stop after this many hosts (0: all)', '0')
    .addOption(outputOption())
    .addHelpText('after', `
Examples:
  bpfleet rollout hosts <id>                          # every host, wave and phase
  bpfleet rollout hosts <id> --phase failed,restore-failed
  bpfleet rollout hosts <id> -o json | jq -r '.hosts[].host'

Large rollouts are read in pages of ${HOSTS_PAGE} hosts (GetRolloutHosts), so this works at any
fleet size; \`rollout get\` shows the same hosts with the steps and analyses.`)
    .action(async (id: string, opts: { phase?: string; limit: string; output: Output }, cmd: Command) => {
      const phases = opts.phase ? parsePhases(opts.phase) : [];
      const limit = parseCount('--limit', opts.limit);
      await withControl(cmd, async (ctl) => {
        const hosts = await pageHosts(ctl, id, phases, limit);
        print(opts.output, GetRolloutHostsResponse.toJSON({ hosts, nextPageToken: '', hostCounts: undefined }), () => hosts.length
          ? hosts.map((h) => `${inert(h.host).padEnd(24)} wave ${String(h.wave + 1).padEnd(3)} ${hostPhaseName(h.phase).padEnd(15)} ${inert(h.message)}`).join('\n')
          : 'no hosts match');
      });
    });
  rollout.command('list')
    .description('list rollouts, oldest first')
    .option('--module <name>', 'only rollouts of this module')
    .addOption(outputOption())
    .addHelpText('after', `
Examples:
  bpfleet rollout list --module pass-counter
  bpfleet rollout list -o json | jq -r '.rollouts[] | select(.status.phase == "ROLLOUT_PHASE_PAUSED") | .id'`)
    .action(async (opts: { module?: string; output: Output }, cmd: Command) => {
      await withControl(cmd, async (ctl) => {
        const res = await ctl.call('listRollouts', { module: opts.module ?? '' });
        print(opts.output, ListRolloutsResponse.toJSON(res), () => res.rollouts.length
          ? res.rollouts.map((r) => `${r.id.padEnd(36)} ${`${r.spec!.module}@${r.spec!.version}`.padEnd(26)} ${phaseName(r.status?.phase).padEnd(12)} ${r.status?.message ?? ''}`).join('\n')
          : 'no rollouts yet');
      });
    });

  rollout.command('status')
    .description('wait for a rollout to end (or pause) and exit with its outcome: the command for CI')
    .argument('<id>', 'rollout id')
    .option('--timeout <duration>', 'give up after this long (exit 5); 0 waits for ever', '10m')
    .addOption(outputOption())
    .addHelpText('after', `
Prints a line whenever the phase, the step or the host counts change, then exits:
  bpfleet rollout status pass-counter-260101100000-ab12 --timeout 5m
  [10:00:01] progressing step 1/3 (canary 1); 0/3 updated, 1 updating
  [10:00:06] progressing step 3/3 (percent 100%); 1/3 updated — bake 4s passed analysis; ...
  [10:00:07] succeeded; 3/3 updated — all 3 hosts run pass-counter@2.0.0
Works against any replica; with --server a,b it moves to the next one if one goes away.
${EXIT_HELP}`)
    .action(async (id: string, opts: { timeout: string; output: Output }, cmd: Command) => {
      const timeoutMs = parseTimeout(opts.timeout);
      await withControl(cmd, async (ctl) => {
        process.exitCode = await followRollout(ctl, id, { format: opts.output, timeoutMs, view: 'status' });
      });
    });

  registerVerb(rollout, 'pause', 'pauseRollout', 'stop sending new applies until resumed (applies in flight finish)', `
Example:
  bpfleet rollout pause <id> --reason "error budget burning"
Pausing a paused rollout changes nothing (exit 0). A finished or rolling-back rollout
refuses (exit 2). The request is audited with who, what and when.`);
  registerVerb(rollout, 'resume', 'resumeRollout', 'continue a paused rollout; at a `pause: {}` step, go past it', `
Example:
  bpfleet rollout resume <id>
A rollout that is not paused refuses (exit 2).`);
  registerVerb(rollout, 'promote', 'promoteRollout', 'skip every remaining bake, analysis and pause step (waves still honour maxUnavailable)', `
Example:
  bpfleet rollout promote <id> --reason "verified by hand on the canary"
Promotion is an operator's judgement instead of the analysis: it is audited, and the
rollout shows [promoted] from then on.`);
  registerVerb(rollout, 'abort', 'abortRollout', 'restore every host the rollout updated; it ends ABORTED', `
Example:
  bpfleet rollout abort <id> --reason "wrong version"
  bpfleet rollout status <id>        # exit 4 once every host is restored (ABORTED)
Each host is swapped back atomically (bpf_link_update), the same way a failed analysis
rolls back.`);

  rollout.command('undo')
    .description('roll a finished rollout back: a new rollout to the version it replaced')
    .argument('<id>', 'a finished rollout (succeeded, or failed and halted with hosts changed)')
    .option('--reason <text>', 'why, for the audit log')
    .option('--wait', 'follow the new rollout and exit with its outcome')
    .option('--timeout <duration>', 'with --wait: give up after this long (exit 5); 0 waits for ever', '10m')
    .addOption(outputOption())
    .addHelpText('after', `
The new rollout has the same module, attachment, selector, steps and analysis, and targets
the version the hosts ran before <id> (the "from" version in \`rollout history\`); going back
is canaried and analysed like going forward. It is refused (exit 2) when the hosts ran
different versions before, or nothing, or when a later rollout of the module on that
attachment changed hosts since.
Example:
  bpfleet rollout undo pass-counter-260101100000-ab12 --wait
${EXIT_HELP}`)
    .action(async (id: string, opts: { reason?: string; wait?: boolean; timeout: string; output: Output }, cmd: Command) => {
      const timeoutMs = parseTimeout(opts.timeout);
      await withControl(cmd, async (ctl) => {
        const created = await ctl.call('undoRollout', { id, reason: opts.reason ?? '' });
        if (!opts.wait) {
          print(opts.output, Rollout.toJSON(created), () => `created rollout ${created.id}: ${created.spec!.module}@${created.spec!.version}, undoing ${id}\nfollow it with: bpfleet rollout get ${created.id} --watch`);
          return;
        }
        process.exitCode = await followRollout(ctl, created.id, { format: opts.output, timeoutMs, view: 'changes' });
      });
    });

  rollout.command('history')
    .description('rollouts oldest first: from and to versions, outcome, who started them and every operator action')
    .option('--module <name>', 'only rollouts of this module')
    .addOption(outputOption())
    .addHelpText('after', `
Example:
  bpfleet rollout history --module pass-counter
  pass-counter-260101100000-ab12  pass-counter 1.0.0 → 2.0.0 on xdp:eth0  SUCCEEDED  2026-01-01 10:00:00 → 10:00:12  by alice@laptop
      10:00:04 pause by alice@laptop  seq=1 reason=looks odd
      10:00:09 resume by bob@laptop  seq=2`)
    .action(async (opts: { module?: string; output: Output }, cmd: Command) => {
      await withControl(cmd, async (ctl) => {
        const res = await ctl.call('getRolloutHistory', { module: opts.module ?? '' });
        print(opts.output, GetRolloutHistoryResponse.toJSON(res), () => historyText(res.entries));
      });
    });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

// Hosts per GetRolloutHosts call the CLI asks for: the server's largest page.
const HOSTS_PAGE = 5000;

const PHASE_WORDS: ReadonlyMap<string, HostPhase> = new Map(HOST_PHASES.map((p) => [hostPhaseName(p).replace(/ /g, '-'), p]));

/** "failed,rolled-back" → the host phases; USAGE naming the words it takes otherwise. */
export function parsePhases(text: string): HostPhase[] {
  return text.split(',').map((w) => w.trim().toLowerCase()).filter(Boolean).map((w) => {
    const p = PHASE_WORDS.get(w);
    if (p === undefined) throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', `--phase: "${inert(w)}" is not a host phase; use ${[...PHASE_WORDS.keys()].join(', ')}`);
    return p;
  });
}

function parseCount(flag: string, text: string): number {
  if (!/^\d{1,9}$/.test(text)) throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', `${flag}: "${inert(text)}" is not a whole number`);
  return Number(text);
}

/** Every host of rollout `id` in `phases` (all when empty), up to `limit` (0: no limit), page by page. */
async function pageHosts(ctl: Control, id: string, phases: HostPhase[], limit: number): Promise<HostProgress[]> {
  const hosts: HostProgress[] = [];
  let pageToken = '';
  do {
    const res = await ctl.call('getRolloutHosts', { id, pageSize: HOSTS_PAGE, pageToken, phases });
    hosts.push(...res.hosts);
    pageToken = res.nextPageToken;
  } while (pageToken && (limit === 0 || hosts.length < limit));
  return limit ? hosts.slice(0, limit) : hosts;
}

/** GetRollout's view with the hosts it left out (status.hostsOmitted) read page by page. */
async function withEveryHost(ctl: Control, r: Rollout): Promise<Rollout> {
  if (!r.status?.hostsOmitted) return r;
  const hosts = await pageHosts(ctl, r.id, [], 0);
  return { ...r, status: { ...r.status, hosts: hosts.sort(byWaveThenHost), hostsOmitted: 0 } };
}
