import type { Etcd3 } from 'etcd3';
import { keys } from '../../common/keys.js';
import { GetStateResponse } from '../../proto/gen/bpfleet/v1/agent.js';
import { Host } from '../../proto/gen/bpfleet/v1/control.js';
import { decode } from './codec.js';

/**
 * The fleet as etcd knows it: registrations (alive while the agent's lease is) joined with
 * what each agent last reported running.
 */
export class HostDirectory {
  constructor(private readonly etcd: Etcd3) {}

  async list(): Promise<Host[]> {
    const [registered, observed] = await Promise.all([
      this.etcd.getAll().prefix(keys.hostsPrefix).strings(),
      this.etcd.getAll().prefix(keys.observedPrefix).strings(),
    ]);
    const observedByHost = new Map<string, GetStateResponse>();
    for (const v of Object.values(observed)) {
      const state = decode(GetStateResponse, v);
      observedByHost.set(state.host, state);
    }
    return Object.values(registered)
      .map((v) => decode(Host, v))
      .map((h) => ({
        ...h,
        attachments: (observedByHost.get(h.name)?.attachments ?? []).map((a) => ({
          attachment: a.attachment,
          module: a.module?.name ?? '',
          version: a.module?.version ?? '',
          digest: a.module?.digest ?? '',
          progId: a.progId,
        })),
      }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  async get(name: string): Promise<Host | null> {
    return (await this.list()).find((h) => h.name === name) ?? null;
  }
}
