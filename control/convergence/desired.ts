/**
 * Desired state, as pure functions: which promoted version covers a host on an attachment,
 * where a host lags behind it, and which hosts the converger moves to it. The rule
 * (docs/ARCHITECTURE.md, "Desired state"):
 * - a succeeded rollout records the version it promoted for its module, attachment and
 *   selector (a DesiredVersion);
 * - a host's desired version on an attachment is the newest record (highest etcd revision)
 *   whose selector matches its labels, whatever the module: the latest rollout that would
 *   have selected the host decides, as if it had been up;
 * - a host lags where it runs nothing, another version, another module, or a BROKEN
 *   attachment there;
 * - the converger installs the desired version on a lagging host that runs nothing or the
 *   same module, can run the hook, and whose module+attachment no rollout owns (one is
 *   active, or the newest one halted with hosts updated: the operator's to settle).
 */
import { AttachmentStatus } from '../../proto/gen/bpfleet/v1/agent.js';
import type { Host, HostLag } from '../../proto/gen/bpfleet/v1/control.js';
import type { ModuleRef } from '../../proto/gen/bpfleet/v1/module.js';
import { FailurePolicy, RolloutPhase, type DesiredVersion, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { isFinal } from '../rollout/vocabulary.js';

/** A stored DesiredVersion with the etcd mod revision of its key: higher is newer. */
export interface DesiredRecord extends DesiredVersion {
  revision: number;
}

/** Why a host lags on an attachment (HostLag.reason). */
export type LagReason = 'NOT_INSTALLED' | 'OTHER_VERSION' | 'OTHER_MODULE' | 'BROKEN';

/** True when every label of `selector` is on the host; the empty selector selects every host. */
export function selects(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** The record that decides `attachment` for a host with `labels`: the newest matching one; null when none matches. */
export function desiredFor(labels: Readonly<Record<string, string>>, attachment: string, records: readonly DesiredRecord[]): DesiredRecord | null {
  let best: DesiredRecord | null = null;
  for (const r of records) {
    if (r.attachment !== attachment || !selects(r.selector, labels)) continue;
    if (!best || r.revision > best.revision) best = r;
  }
  return best;
}

/** Where `host` does not run what the fleet's desired state says, one entry per attachment, in attachment order. */
export function lagsOf(host: Pick<Host, 'labels' | 'attachments'>, records: readonly DesiredRecord[]): HostLag[] {
  const attachments = [...new Set(records.map((r) => r.attachment))].sort();
  const lags: HostLag[] = [];
  for (const attachment of attachments) {
    const desired = desiredFor(host.labels, attachment, records);
    if (!desired) continue;
    const running = host.attachments.find((a) => a.attachment === attachment && a.module);
    const reason: LagReason | null = !running ? 'NOT_INSTALLED'
      : running.module !== desired.module ? 'OTHER_MODULE'
      : running.status === AttachmentStatus.ATTACHMENT_STATUS_BROKEN ? 'BROKEN'
      : running.digest !== desired.digest ? 'OTHER_VERSION'
      : null;
    if (reason) {
      lags.push({
        attachment,
        module: desired.module,
        desiredVersion: desired.version,
        runningVersion: running ? (running.module === desired.module ? running.version : `${running.module}@${running.version}`) : '',
        reason,
      });
    }
  }
  return lags;
}

/** `module\0attachment`: the scope a rollout owns while it is active. */
export const scopeOf = (module: string, attachment: string): string => `${module}\0${attachment}`;

/** One install the converger sends: `module` onto the host's attachment, replacing `expectedDigest` ("" = nothing). */
export interface ConvergeAction {
  host: string;
  attachment: string;
  module: ModuleRef;
  expectedDigest: string;
  /** The rollout that promoted the version: the intent names it, so the host's state does. */
  rolloutId: string;
  lag: HostLag;
}

/** A lagging host the converger leaves alone, and why (for the logs and `bpfleet hosts`). */
export interface ConvergeWait {
  host: string;
  attachment: string;
  why: string;
}

export interface ConvergeInput {
  /** Registered hosts with what they run (HostDirectory). */
  hosts: readonly Pick<Host, 'name' | 'labels' | 'capabilities' | 'attachments'>[];
  records: readonly DesiredRecord[];
  /** Scopes (scopeOf) a rollout owns, with why: an active rollout, or a halted one. */
  owned: ReadonlyMap<string, string>;
}

/** What the converger should install now, and the lagging hosts it leaves alone. */
export function convergeActions(input: ConvergeInput): { actions: ConvergeAction[]; waiting: ConvergeWait[] } {
  const actions: ConvergeAction[] = [];
  const waiting: ConvergeWait[] = [];
  for (const host of input.hosts) {
    for (const lag of lagsOf(host, input.records)) {
      const wait = (why: string) => waiting.push({ host: host.name, attachment: lag.attachment, why });
      const owner = input.owned.get(scopeOf(lag.module, lag.attachment));
      if (owner) {
        wait(owner);
        continue;
      }
      if (lag.reason === 'OTHER_MODULE') {
        wait(`runs ${lag.runningVersion}, not ${lag.module}: a rollout of ${lag.module} would refuse it too`);
        continue;
      }
      if (lag.reason === 'BROKEN') {
        // The agent reattaches the pinned program when the interface is back; an install
        // now would fail the same way.
        wait('its attachment is broken');
        continue;
      }
      const hook = lag.attachment.split(':')[0]!;
      if (!host.capabilities.includes(hook)) {
        wait(`cannot run ${hook} programs`);
        continue;
      }
      const desired = desiredFor(host.labels, lag.attachment, input.records)!;
      const running = host.attachments.find((a) => a.attachment === lag.attachment && a.module);
      actions.push({
        host: host.name,
        attachment: lag.attachment,
        module: { name: desired.module, version: desired.version, digest: desired.digest },
        expectedDigest: running?.digest ?? '',
        rolloutId: desired.rolloutId,
        lag,
      });
    }
  }
  return { actions, waiting };
}

/**
 * The scopes rollouts own, with why, from the rollouts' records (oldest first, as
 * RolloutStore.list returns them): every unfinished rollout's, and the scope whose newest
 * rollout ended FAILED under `onFailure: halt` with hosts updated, after the newest desired
 * record of that scope: the operator halted it to look, so its hosts stay as they are until
 * the next rollout (or an undo) of the module there.
 */
export function ownedScopes(rollouts: readonly Rollout[], records: readonly DesiredRecord[]): Map<string, string> {
  const owned = new Map<string, string>();
  const newest = new Map<string, Rollout>();
  for (const r of rollouts) {
    const spec = r.spec!;
    const scope = scopeOf(spec.module, spec.attachment);
    if (!isFinal(r)) owned.set(scope, `rollout ${r.id} is active on ${spec.module} ${spec.attachment}`);
    newest.set(scope, r);
  }
  const recordedAt = new Map<string, string>();
  for (const d of records) {
    const scope = scopeOf(d.module, d.attachment);
    if ((recordedAt.get(scope) ?? '') < d.at) recordedAt.set(scope, d.at);
  }
  for (const [scope, r] of newest) {
    if (owned.has(scope)) continue;
    const halted = r.status?.phase === RolloutPhase.ROLLOUT_PHASE_FAILED && r.spec!.onFailure === FailurePolicy.FAILURE_POLICY_HALT && (r.status.hostCounts?.updated ?? 0) > 0;
    if (halted && r.createdAt > (recordedAt.get(scope) ?? '')) owned.set(scope, `rollout ${r.id} halted on a failure; undo it or roll out again`);
  }
  return owned;
}
