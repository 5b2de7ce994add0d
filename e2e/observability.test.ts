/**
 * Observability end to end, all real: a local fleet (etcd, nats-server, control plane, two
 * agents driving XDP in the kernel) exporting traces over OTLP/HTTP to a receiver in this
 * test, Prometheus endpoints scraped before and after rollouts, and the CI example script
 * (infra/ci/rollout.sh) run the way a pipeline runs it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LocalFleet, REPO } from '../dev/fleet.js';
import { SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_CODE_ERROR, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';
import { prereqSkip } from './support/prereqs.js';
import { scrape, type Exposition } from './support/prometheus.js';

const skip = await prereqSkip(['root', 'bpf', 'bpffs', 'etcd', 'nats', 'netns', 'nsenter', 'clang']);

interface ScriptResult {
  code: number;
  output: string;
}

interface Summary {
  id: string;
  status: { phase: string };
}

describe('observability: traces, metrics and the CI example on a local fleet', { skip }, () => {
  let receiver: OtlpReceiver;
  let fleet: LocalFleet;
  let dir: string;

  const agentsOf = (spans: readonly ReceivedSpan[]) => new Set(spans.filter((s) => s.serviceName === 'bpfleet-agent').map((s) => String(s.resource['service.instance.id'])));
  const scrapeAll = async () => ({
    control: await scrape(fleet.controlMetricsUrl),
    agents: new Map(await Promise.all(fleet.hosts.map(async (h) => [h.name, await scrape(h.metricsUrl)] as const))),
  });

  /** Runs the CI example as a pipeline would, with the CLI of this checkout. */
  const ciRollout = (manifest: string, spec: string, summary: string) => new Promise<ScriptResult>((resolve, reject) => {
    const child = spawn('bash', [join(REPO, 'infra/ci/rollout.sh'), manifest, spec], {
      cwd: REPO,
      env: {
        ...process.env,
        BPFLEET: `${process.execPath} ${join(REPO, 'bin/bpfleet.mjs')}`,
        ...fleet.clientEnv(),
        BPFLEET_SUMMARY: summary,
        BPFLEET_TIMEOUT: '90s',
        BPFLEET_ACTOR: 'ci:e2e',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, output }));
  });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bpfleet-e2e-obs-'));
    receiver = await startOtlpReceiver();
    fleet = await LocalFleet.start({ name: 'obs', hosts: 2, trafficPps: 1000, otlpEndpoint: receiver.endpoint });
    for (const m of ['pass-counter-v1', 'pass-counter-v2', 'drop-all']) {
      const r = await fleet.cli(['module', 'push', `agent/bpf/${m}.yaml`]);
      assert.equal(r.code, 0, r.stderr);
    }
    const v1 = await fleet.cli(['rollout', 'create', '-f', 'examples/rollout-v1.yaml', '--wait', '--timeout', '60s']);
    assert.equal(v1.code, 0, v1.stdout + v1.stderr);
  });

  after(async () => {
    await fleet?.stop();
    await receiver?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  let good: Summary;
  let metricsBefore: Awaited<ReturnType<typeof scrapeAll>>;

  test('the CI script exits 0 on a good rollout and saves its summary', async () => {
    metricsBefore = await scrapeAll();
    const summaryFile = join(dir, 'good.json');
    const r = await ciRollout('agent/bpf/pass-counter-v2.yaml', 'examples/rollout-v2.yaml', summaryFile);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /analysis \(step 2\): PASS/);
    good = JSON.parse(readFileSync(summaryFile, 'utf8')) as Summary;
    assert.equal(good.status.phase, 'ROLLOUT_PHASE_SUCCEEDED');
    assert.match(r.output, new RegExp(`rollout ${good.id} succeeded`));
  });

  test('that rollout is one trace, from the CLI through the control plane to every agent', async () => {
    assert.ok(good, 'needs the good rollout');
    const roots = receiver.spans.filter((s) => s.serviceName === 'bpfleet-cli' && s.name === 'bpfleet rollout create' && !s.parentSpanId);
    const root = roots.find((s) => receiver.spans.some((x) => x.traceId === s.traceId && x.attributes['bpfleet.rollout.id'] === good.id));
    const inTrace = () => receiver.spans.filter((s) => s.traceId === root?.traceId);
    const orphans = () => {
      const ids = new Set(inTrace().map((s) => s.spanId));
      return inTrace().filter((s) => s.parentSpanId && !ids.has(s.parentSpanId));
    };
    // The rollout's last passes end after the CLI has seen it succeed: wait for the export.
    await receiver.waitFor(() => {
      const spans = inTrace();
      return spans.length > 0 && agentsOf(spans).size === fleet.hosts.length && orphans().length === 0
        && spans.some((s) => s.name === 'rollout.reconcile' && s.attributes['bpfleet.rollout.phase'] === 'succeeded');
    }, 20_000, () => `root ${root?.traceId}; agents ${[...agentsOf(inTrace())]}; orphans ${orphans().map((s) => `${s.serviceName}:${s.name}`)}`);
    const spans = inTrace();
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const parentOf = (s: ReceivedSpan) => byId.get(s.parentSpanId);
    const ancestors = (s: ReceivedSpan) => {
      const chain: ReceivedSpan[] = [];
      for (let p = parentOf(s); p; p = parentOf(p)) chain.push(p);
      return chain;
    };

    // One trace per rollout: every span that names the rollout is in it.
    const naming = receiver.spans.filter((s) => s.attributes['bpfleet.rollout.id'] === good.id);
    assert.deepEqual([...new Set(naming.map((s) => s.traceId))], [root!.traceId]);
    assert.deepEqual(new Set(spans.map((s) => s.serviceName)), new Set(['bpfleet-cli', 'bpfleet-control', 'bpfleet-agent']));
    for (const s of spans) if (s !== root) assert.ok(ancestors(s).includes(root!), `${s.serviceName} ${s.name} does not descend from the CLI span`);

    // CLI → ControlService/CreateRollout (client, then server) → every controller pass.
    const createServer = spans.find((s) => s.name === 'bpfleet.v1.ControlService/CreateRollout' && s.kind === SPAN_KIND_SERVER)!;
    assert.equal(createServer.serviceName, 'bpfleet-control');
    assert.equal(parentOf(createServer)?.kind, SPAN_KIND_CLIENT);
    assert.equal(parentOf(parentOf(createServer)!), root);
    const passes = spans.filter((s) => s.name === 'rollout.reconcile');
    assert.ok(passes.length >= 3, `${passes.length} controller passes`);
    for (const p of passes) assert.equal(p.parentSpanId, createServer.spanId, 'each pass is a child of the creating request');
    const transitions = passes.flatMap((p) => p.events.filter((e) => e.name === 'rollout.transition').map((e) => String(e.attributes['bpfleet.event'])));
    assert.ok(transitions.some((e) => /^planned 2 hosts/.test(e)), transitions.join('\n'));
    assert.ok(transitions.some((e) => /^succeeded/.test(e)), transitions.join('\n'));

    // Each host: controller apply → AgentService/Apply client → the agent's server span, and
    // inside the agent (from the RPC or from its etcd watch, whichever came first) the swap.
    for (const h of fleet.hosts) {
      const apply = spans.find((s) => s.name === 'rollout.apply' && s.attributes['bpfleet.host'] === h.name);
      assert.ok(apply, `no rollout.apply span for ${h.name}`);
      assert.equal(apply.attributes['bpfleet.module'], 'pass-counter@2.0.0');
      assert.ok(passes.includes(parentOf(apply)!), 'applies are sent from a controller pass');
      const server = spans.find((s) => s.name === 'bpfleet.v1.AgentService/Apply' && s.kind === SPAN_KIND_SERVER && s.resource['service.instance.id'] === h.name);
      assert.ok(server, `no Apply server span from ${h.name}`);
      assert.equal(parentOf(server)?.kind, SPAN_KIND_CLIENT);
      assert.equal(parentOf(parentOf(server)!), apply);
      const fromAgent = spans.filter((s) => s.resource['service.instance.id'] === h.name);
      const swap = fromAgent.find((s) => s.name === 'bpf.swap');
      assert.ok(swap, `${h.name}: no bpf.swap span among ${fromAgent.map((s) => s.name)}`);
      const install = parentOf(swap)!;
      assert.equal(install.name, 'dataplane.install');
      assert.equal(install.attributes['bpfleet.install.changed'], true);
      assert.equal(install.attributes['bpfleet.module.digest'], apply.attributes['bpfleet.module.digest']);
      assert.ok(Number(install.attributes['bpfleet.link.id']) > 0, 'the install span names the link it updated');
      assert.ok(fromAgent.some((s) => s.name === 'bpf.load' && s.parentSpanId === install.spanId), `${h.name}: no bpf.load under the install`);
      const applySpan = parentOf(install)!;
      for (const step of ['module.resolve', 'artifact.fetch', 'state.report']) {
        assert.ok(fromAgent.some((s) => s.name === step && s.parentSpanId === applySpan.spanId), `${h.name}: no ${step} beside the install`);
      }
    }

    // The analysis that promoted the canary: its verdict, and links to the installs that
    // produced the telemetry it judged — the canary's in this trace, the baseline's in the
    // trace of the rollout that installed 1.0.0.
    const analysis = spans.find((s) => s.name === 'rollout.analysis' && s.attributes['bpfleet.verdict'] === 'pass');
    assert.ok(analysis, 'no passing analysis span');
    assert.ok(passes.includes(parentOf(analysis)!));
    const canaryLinks = analysis.links.filter((l) => l.attributes['bpfleet.analysis.cohort'] === 'canary');
    const baselineLinks = analysis.links.filter((l) => l.attributes['bpfleet.analysis.cohort'] === 'baseline');
    assert.ok(canaryLinks.length > 0 && canaryLinks.every((l) => l.traceId === root!.traceId), JSON.stringify(analysis.links));
    assert.ok(canaryLinks.every((l) => spans.some((s) => s.spanId === l.spanId && s.name === 'dataplane.install')), 'canary links point at its install');
    assert.ok(baselineLinks.length > 0 && baselineLinks.every((l) => l.traceId !== root!.traceId), JSON.stringify(analysis.links));
    assert.ok(Number(canaryLinks[0]!.attributes['bpfleet.telemetry.reports']) >= 4, 'the link says how many reports it stands for');
    assert.ok(analysis.events.some((e) => e.name === 'analysis.metric' && e.attributes['bpfleet.analysis.metric'] === 'drop_rate'));

    // Logs of the work carry the trace: the controller's transitions and the agents' applies.
    const traced = (lines: readonly string[]) => lines.filter((l) => l.includes(`"trace_id":"${root!.traceId}"`));
    assert.ok(traced(fleet.control.lines()).length > 0, 'control log lines carry the rollout trace id');
    for (const h of fleet.hosts) assert.ok(traced(h.agent.lines()).some((l) => /"msg":"(applied|already running|converged)/.test(l)), `${h.name}: apply logs carry the trace id`);
  });

  test('the Prometheus endpoints count what the rollout did', async () => {
    assert.ok(metricsBefore && good, 'needs the good rollout');
    const after = await scrapeAll();
    const { control } = after;
    const delta = (name: string, labels: Record<string, string> = {}, from: Exposition = metricsBefore.control, to: Exposition = control) =>
      to.sum(name, labels) - from.sum(name, labels);
    assert.equal(delta('bpfleet_rollout_count', { bpfleet_rollout_phase: 'succeeded' }), 1);
    assert.equal(control.sum('bpfleet_rollout_count', { bpfleet_rollout_phase: 'progressing' }), 0);
    assert.ok(delta('bpfleet_analysis_verdicts_total', { bpfleet_verdict: 'pass' }) >= 1);
    assert.ok(delta('bpfleet_rollout_step_duration_count', { bpfleet_rollout_step_kind: 'bake', bpfleet_rollout_step_outcome: 'passed' }) === 1);
    const bakeSeconds = delta('bpfleet_rollout_step_duration_sum', { bpfleet_rollout_step_kind: 'bake' });
    assert.ok(bakeSeconds >= 4 && bakeSeconds < 60, `the 4s bake step took ${bakeSeconds}s`);
    assert.equal(metricsBefore.control.sum('bpfleet_module_host_count', { bpfleet_module_version: '1.0.0' }), 2);
    assert.equal(control.sum('bpfleet_module_host_count', { bpfleet_module_version: '1.0.0' }), 0);
    assert.equal(control.sum('bpfleet_module_host_count', { bpfleet_module_version: '2.0.0', bpfleet_attachment: 'xdp:eth0' }), 2);
    assert.ok(delta('bpfleet_telemetry_reports_total') > 10, 'telemetry reports received');
    assert.ok(delta('bpfleet_telemetry_report_lag_count') > 10);
    assert.equal(control.sum('bpfleet_controller_leader'), 1);
    for (const h of fleet.hosts) {
      const before = metricsBefore.agents.get(h.name)!;
      const now = after.agents.get(h.name)!;
      assert.ok(delta('bpfleet_agent_apply_duration_count', { bpfleet_apply_result: 'changed' }, before, now) >= 1, `${h.name}: apply histogram`);
      assert.equal(delta('bpfleet_agent_swap_duration_count', { bpfleet_swap_kind: 'replace' }, before, now), 1, `${h.name}: one swap`);
      assert.equal(delta('bpfleet_agent_load_duration_count', {}, before, now), 1, `${h.name}: one load`);
      assert.ok(delta('bpfleet_agent_telemetry_reports_total', {}, before, now) > 5, `${h.name}: telemetry published`);
    }
  });

  test('the CI script exits non-zero when the rollout is rolled back, and still saves the summary', async () => {
    const before = await scrape(fleet.controlMetricsUrl);
    const summaryFile = join(dir, 'bad.json');
    const r = await ciRollout('agent/bpf/drop-all.yaml', 'examples/rollout-bad.yaml', summaryFile);
    assert.equal(r.code, 3, r.output);
    assert.match(r.output, /was rolled back/);
    const bad = JSON.parse(readFileSync(summaryFile, 'utf8')) as Summary;
    assert.equal(bad.status.phase, 'ROLLOUT_PHASE_ROLLED_BACK');
    const now = await scrape(fleet.controlMetricsUrl);
    assert.ok(now.sum('bpfleet_analysis_verdicts_total', { bpfleet_verdict: 'fail' }) > before.sum('bpfleet_analysis_verdicts_total', { bpfleet_verdict: 'fail' }));
    assert.equal(now.sum('bpfleet_rollout_count', { bpfleet_rollout_phase: 'rolled_back' }) - before.sum('bpfleet_rollout_count', { bpfleet_rollout_phase: 'rolled_back' }), 1);
    assert.ok(now.sum('bpfleet_rollout_step_duration_count', { bpfleet_rollout_step_outcome: 'failed' }) > before.sum('bpfleet_rollout_step_duration_count', { bpfleet_rollout_step_outcome: 'failed' }));
  });

  test('a rollout stays one trace when the control plane restarts in the middle of it', async () => {
    const spec = [
      'module: pass-counter', 'version: 1.0.0', 'attachment: xdp:eth0', 'selector: {role: edge}',
      'steps: [{canary: 1}, {pause: {}}, {bake: 2s}, {percent: 100}]',
      'analysis: {interval: 1s, minSamples: 4, inconclusiveLimit: 10, metrics: [{name: drop_rate, max: 0.05}]}', '',
    ].join('\n');
    const created = await fleet.cli(['rollout', 'create', '-f', '-', '-o', 'json'], { stdin: spec });
    assert.equal(created.code, 0, created.stderr);
    const id = (JSON.parse(created.stdout) as Summary).id;
    const firstControl = fleet.control.pid;
    // Restart once the canary runs the new version, while the rollout waits at its pause:
    // however slow the machine, the first replica cannot finish the rollout alone.
    for (const deadline = Date.now() + 30_000; ;) {
      const r = await fleet.cli(['rollout', 'get', id, '-o', 'json']);
      const status = (JSON.parse(r.stdout) as { status: { phase?: string } }).status;
      if (status.phase === 'ROLLOUT_PHASE_PAUSED') break;
      assert.ok(Date.now() < deadline, `rollout ${id} never reached its pause step`);
      await new Promise((res) => setTimeout(res, 200));
    }
    await fleet.control.stop();
    await fleet.startControl();
    const resumed = await fleet.cli(['rollout', 'resume', id]);
    assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr);
    const done = await fleet.cli(['rollout', 'get', id, '--watch', '--timeout', '60s']);
    assert.equal(done.code, 0, done.stdout + done.stderr);

    const naming = () => receiver.spans.filter((s) => s.attributes['bpfleet.rollout.id'] === id);
    const replicas = () => new Set(naming().filter((s) => s.serviceName === 'bpfleet-control').map((s) => String(s.resource['service.instance.id'])));
    await receiver.waitFor(() => replicas().size === 2 && naming().some((s) => s.attributes['bpfleet.rollout.phase'] === 'succeeded'), 20_000,
      () => `control replicas seen: ${[...replicas()]}`);
    assert.notEqual(fleet.control.pid, firstControl);
    assert.deepEqual([...new Set(naming().map((s) => s.traceId))].length, 1, 'both replicas trace the rollout in one trace');
    const create = receiver.spans.find((s) => s.name === 'bpfleet.v1.ControlService/CreateRollout' && s.kind === SPAN_KIND_SERVER && s.attributes['bpfleet.rollout.id'] === id)!;
    const passes = naming().filter((s) => s.name === 'rollout.reconcile');
    const byReplica = new Map<string, ReceivedSpan[]>();
    for (const p of passes) byReplica.set(String(p.resource['service.instance.id']), [...(byReplica.get(String(p.resource['service.instance.id'])) ?? []), p]);
    assert.equal(byReplica.size, 2, 'passes from both replicas');
    for (const p of passes) assert.equal(p.parentSpanId, create.spanId, 'a pass on either replica is a child of the creating request');
  });

  test('a swap the verifier refuses is counted by reason and traced with the verifier log', async () => {
    const spec = 'module: pass-counter\nversion: 4.0.0-verifier-reject\nattachment: xdp:eth0\nselector: {role: edge}\nsteps: [{canary: 1}, {percent: 100}]\n';
    const push = await fleet.cli(['module', 'push', 'agent/bpf/testdata/verifier-reject.yaml']);
    assert.equal(push.code, 0, push.stderr);
    const before = await scrapeAll();
    const r = await fleet.cli(['rollout', 'create', '-f', '-', '--wait', '--timeout', '60s', '-o', 'json'], { stdin: spec });
    assert.equal(r.code, 3, r.stdout + r.stderr);
    const id = (JSON.parse(r.stdout) as Summary).id;
    const failures = async () => {
      const now = await scrapeAll();
      return fleet.hosts.map((h) => now.agents.get(h.name)!.sum('bpfleet_agent_swap_failures_total', { error_type: 'VERIFIER_REJECTED' })
        - before.agents.get(h.name)!.sum('bpfleet_agent_swap_failures_total', { error_type: 'VERIFIER_REJECTED' }));
    };
    // The canary only: the rollout stops there. Its watch and the RPC may both have tried.
    const counted = await failures();
    assert.equal(counted.filter((n) => n > 0).length, 1, `swap failures per host: ${counted}`);
    const refusedLoad = (spans: readonly ReceivedSpan[]) => spans.find((s) => s.name === 'bpf.load' && s.statusCode === STATUS_CODE_ERROR
      && spans.some((a) => a.attributes['bpfleet.rollout.id'] === id && a.traceId === s.traceId));
    await receiver.waitFor((spans) => refusedLoad(spans) !== undefined, 20_000, () => 'no failed bpf.load span in the rollout trace');
    const failed = refusedLoad(receiver.spans)!;
    assert.equal(failed.attributes['error.type'], 'VERIFIER_REJECTED');
    assert.match(String(failed.attributes['bpfleet.error.detail']), /invalid access to packet|R\d/, 'the verifier log travels with the span');
  });
});
