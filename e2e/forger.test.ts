/**
 * The demo's bad version is still rolled back with a forger running, all real: etcd with TLS
 * and auth, nats-server with per-identity permissions, the control plane and three agents
 * as processes driving XDP programs in the kernel, UDP traffic into every host.
 *
 * The forger holds host h3's real certificate and key (root on h3). h3 is left out of the
 * rollout (its label does not match the selector), so the canary is h1 or h2. While the bad
 * 3.0.0-bad (drops every packet) bakes on the canary, the forger floods its own subject
 * with reports that claim to be h1 and h2 with perfect numbers (no drops), and with reports
 * stamped an hour ahead; NATS refuses it h1's subject outright. The control plane must drop
 * every forged report (HOST_MISMATCH / FUTURE_TIMESTAMP in
 * bpfleet_telemetry_reports_total), judge the canary on its own reports only (drop rate ≈ 1)
 * and roll back.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { subjects } from '../common/keys.js';
import { LocalFleet } from '../dev/fleet.js';
import { TelemetryReport } from '../proto/gen/bpfleet/v1/telemetry.js';
import { scrape } from './support/prometheus.js';
import { prereqSkip } from './support/prereqs.js';

const skip = await prereqSkip(['root', 'bpf', 'bpffs', 'etcd', 'nats', 'netns', 'nsenter', 'clang']);
const HOUR = 3_600_000;
/** Forged reports per claimed host and second: far more than an honest agent (2/s here). */
const FORGED_PER_SECOND = 20;

interface RolloutJson {
  id: string;
  status: {
    phase: string;
    message: string;
    hosts: { host: string; wave: number; phase: string }[];
    analyses: { verdict: string; summary: string; metrics: { metric: string; verdict: string; canary: number; canarySamples: number }[] }[];
  };
}

describe('a forger holding h3\'s credentials does not save the bad version', { skip }, () => {
  let fleet: LocalFleet;

  before(async () => {
    fleet = await LocalFleet.start({
      name: 'forge', hosts: 3, trafficPps: 1000,
      // h3 is the forger's host: outside the rollout, so the canary is one of the hosts it lies about.
      labels: (i) => ({ role: i === 3 ? 'forger' : 'edge', zone: i % 2 ? 'a' : 'b' }),
    });
    for (const m of ['pass-counter-v1', 'drop-all']) await fleet.cliJson(['module', 'push', `agent/bpf/${m}.yaml`]);
    const r = await fleet.cli(['rollout', 'create', '-f', 'examples/rollout-v1.yaml', '--wait', '--timeout', '60s']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  after(async () => {
    await fleet?.stop();
  });

  test("NATS refuses h3's credentials h1's subject; forged reports on h3's own are dropped and counted; the bad version is rolled back", async () => {
    const modules = await fleet.cliJson<{ modules: { manifest: { name: string; version: string }; digest: string }[] }>(['module', 'list']);
    const bad = modules.modules.find((m) => m.manifest.version === '3.0.0-bad')!;
    const forger: NatsConnection = await connect({ ...fleet.natsOptions('h3'), reconnect: false });
    const serverErrors: string[] = [];
    void (async () => {
      for await (const s of forger.status()) if (s.type === 'error') serverErrors.push(String(s.error));
    })();
    const metricsBefore = await scrape(fleet.controlMetricsUrl);

    // 1. Straight onto h1's subject: nats-server refuses the publish.
    forger.publish(subjects.telemetry('h1'), TelemetryReport.encode(TelemetryReport.fromPartial({ host: 'h1', timestampMs: Date.now(), sequence: 1 })).finish());
    await forger.flush();
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(serverErrors.some((e) => /Permissions Violation for Publish to "bpfleet\.telemetry\.h1"/.test(e)), `refusal seen: ${serverErrors.join('; ')}`);

    // 2. On h3's own subject, for the whole bad rollout: h1 and h2 with no drops at all
    //    (every run reaches the stack, cumulative counters rising), and h3 an hour ahead.
    const forged = { mismatch: 0, future: 0 };
    const t0 = Date.now();
    let seq = 1_000_000;
    const send = (host: string, aheadMs: number): void => {
      const elapsed = Date.now() - t0;
      const runs = 1_000 + elapsed * 10;
      const report = TelemetryReport.fromPartial({
        host, timestampMs: Date.now() + aheadMs, sequence: seq++, monotonicMs: 10_000_000 + elapsed,
        attachments: [{
          attachment: 'xdp:eth0', module: { name: bad.manifest.name, version: bad.manifest.version, digest: bad.digest },
          progId: 1, runCount: runs, runTimeNs: runs * 50, stackRxPackets: runs, ifaceRxPackets: runs,
        }],
      });
      forger.publish(subjects.telemetry('h3'), TelemetryReport.encode(report).finish());
    };
    const timer = setInterval(() => {
      send('h1', 0);
      send('h2', 0);
      forged.mismatch += 2;
      send('h3', HOUR);
      forged.future += 1;
    }, 1000 / FORGED_PER_SECOND);
    let r: Awaited<ReturnType<LocalFleet['cli']>>;
    try {
      r = await fleet.cli(['rollout', 'create', '-f', 'examples/rollout-bad.yaml', '--wait', '--timeout', '45s']);
    } finally {
      clearInterval(timer);
    }
    await forger.flush();
    await forger.close();
    assert.equal(r.code, 3, `the bad rollout must fail (exit 3): ${r.stdout}${r.stderr}`);

    const list = await fleet.cliJson<{ rollouts: { id: string }[] }>(['rollout', 'list']);
    const rollout = await fleet.cliJson<RolloutJson>(['rollout', 'get', list.rollouts.at(-1)!.id]);
    assert.equal(rollout.status.phase, 'ROLLOUT_PHASE_ROLLED_BACK', rollout.status.message);
    const canary = rollout.status.hosts.filter((h) => h.phase !== 'HOST_PHASE_PENDING').map((h) => h.host);
    assert.equal(canary.length, 1, `one canary: ${canary.join(', ')}`);
    assert.ok(['h1', 'h2'].includes(canary[0]!), `the canary is one the forger claims to be, not ${canary[0]}`);
    // The canary was judged on its own reports: drop-all drops everything. Had the forged
    // "no drops" samples been filed under it, its mean drop rate would sit far below 1.
    const failed = rollout.status.analyses.find((a) => a.verdict === 'VERDICT_FAIL');
    assert.ok(failed, `an analysis failed: ${JSON.stringify(rollout.status.analyses)}`);
    const dropRate = failed.metrics.find((m) => m.metric === 'drop_rate')!;
    assert.equal(dropRate.verdict, 'VERDICT_FAIL');
    assert.ok(dropRate.canary > 0.9, `canary drop rate ${dropRate.canary}: forged reports leaked into the canary's samples`);

    // Every forged report was dropped, and counted under its reason.
    await waitFor(async () => {
      const m = await scrape(fleet.controlMetricsUrl);
      const delta = (type: string) => m.sum('bpfleet_telemetry_reports_total', { error_type: type }) - metricsBefore.sum('bpfleet_telemetry_reports_total', { error_type: type });
      return delta('HOST_MISMATCH') === forged.mismatch && delta('FUTURE_TIMESTAMP') === forged.future
        ? null : `HOST_MISMATCH ${delta('HOST_MISMATCH')}/${forged.mismatch}, FUTURE_TIMESTAMP ${delta('FUTURE_TIMESTAMP')}/${forged.future}`;
    });
    assert.ok(forged.mismatch > 4 * FORGED_PER_SECOND, `the forger ran through the bake (${forged.mismatch} reports)`);
    const log = fleet.control.lines().join('\n');
    assert.match(log, /"reason":"HOST_MISMATCH"[^\n]*"subject":"bpfleet\.telemetry\.h3"/);
    assert.match(log, /"reason":"FUTURE_TIMESTAMP"[^\n]*"subject":"bpfleet\.telemetry\.h3"/);
  });
});

/** Polls `check` (null = done, else what is still wrong) for up to 5 s. */
async function waitFor(check: () => Promise<string | null>): Promise<void> {
  let last: string | null = 'not checked';
  for (const deadline = Date.now() + 5_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
    last = await check();
    if (last === null) return;
  }
  assert.fail(last ?? 'timed out');
}
