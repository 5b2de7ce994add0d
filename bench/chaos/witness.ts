/**
 * What the chaos run reads to check its invariants, from outside the product: bpftool for
 * what each kernel host runs (e2e/support/bpftool.ts), /proc for a process's memory, etcd's
 * own metrics endpoint for its database size, the agents' GetApplyHistory for what each one
 * applied, and the observed keys of sim hosts read raw from etcd (the sim has no kernel).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Metadata, type ChannelCredentials } from '@grpc/grpc-js';
import type { Etcd3 } from 'etcd3';
import { keys } from '../../common/keys.js';
import { createPinRoot } from '../../dev/pins.js';
import { run } from '../../dev/processes.js';
import { HOST_IFACE } from '../../dev/netns.js';
import { prog, xdpProgId } from '../../e2e/support/bpftool.js';
import { AgentServiceClient, GetStateResponse, type GetApplyHistoryResponse } from '../../proto/gen/bpfleet/v1/agent.js';
import { HOST_METADATA } from '../sim-pool/pool.js';
import type { AttachmentSample } from './invariants.js';

/**
 * The kernel's tag of each version's XDP program (tag → version): each object is loaded once
 * with bpftool under a claimed pin root and unpinned. A tag is the kernel's hash of the
 * program's instructions with map references zeroed, so every load of an object has it.
 */
export async function versionTags(objects: readonly { version: string; objectPath: string }[]): Promise<Map<string, string>> {
  const root = await createPinRoot(`chaos-tags-${process.pid}`);
  try {
    const out = new Map<string, string>();
    for (const { version, objectPath } of objects) {
      const pin = join(root.path, version.replace(/[^a-z0-9]/gi, '-'));
      await run('bpftool', ['prog', 'load', objectPath, pin]);
      const { stdout } = await run('bpftool', ['-j', 'prog', 'show', 'pinned', pin]);
      out.set((JSON.parse(stdout) as { tag: string }).tag, version);
    }
    return out;
  } finally {
    await root.destroy();
  }
}

/** bpftool's view of xdp on eth0 in `netns` at `atMs`: whether eth0 exists and the tag running there. */
export async function sampleAttachment(host: string, netns: string, atMs: number): Promise<AttachmentSample> {
  const present = await run('ip', ['-n', netns, 'link', 'show', 'dev', HOST_IFACE]).then(() => true, () => false);
  if (!present) return { host, atMs, ifacePresent: false, progTag: null };
  for (let attempt = 0; ; attempt++) {
    try {
      const id = await xdpProgId(netns, HOST_IFACE);
      return { host, atMs, ifacePresent: true, progTag: id === null ? null : (await prog(id)).tag };
    } catch (err) {
      // A swap between the two reads frees the old program id, or the interface went meanwhile: read again.
      if (attempt >= 2) throw err;
    }
  }
}

/** Resident memory of a process in bytes (VmRSS of /proc/<pid>/status), or null once it is gone. */
export function rssBytes(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** etcd's database size in bytes (etcd_mvcc_db_total_size_in_bytes from a member's /metrics), or null if it does not answer. */
export async function etcdDbBytes(metricsUrl: string): Promise<number | null> {
  try {
    const text = await (await fetch(`${metricsUrl}/metrics`, { signal: AbortSignal.timeout(2_000) })).text();
    const m = /^etcd_mvcc_db_total_size_in_bytes (\S+)$/m.exec(text);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** An agent's record of the applies that changed its dataplane; `host` names a sim host behind a pool's address. */
export function applyHistory(address: string, creds: ChannelCredentials, host?: string): Promise<GetApplyHistoryResponse> {
  const client = new AgentServiceClient(address, creds);
  const md = new Metadata();
  if (host) md.set(HOST_METADATA, host);
  return new Promise<GetApplyHistoryResponse>((resolve, reject) => {
    client.getApplyHistory({}, md, { deadline: Date.now() + 5_000 }, (err, res) => (err ? reject(err) : resolve(res)));
  }).finally(() => client.close());
}

/** Hosts whose own observed report (raw from etcd) says they run `digest` on `attachment`. */
export async function hostsObservedOn(etcd: Etcd3, attachment: string, digest: string): Promise<string[]> {
  const all = await etcd.getAll().prefix(keys.observedPrefix).strings();
  const out: string[] = [];
  for (const [key, text] of Object.entries(all)) {
    try {
      const state = GetStateResponse.fromJSON(JSON.parse(text));
      if (state.attachments.some((a) => a.attachment === attachment && a.module?.digest === digest)) out.push(key.slice(keys.observedPrefix.length));
    } catch {
      // The run writes malformed keys on purpose; they name no host.
    }
  }
  return out;
}
