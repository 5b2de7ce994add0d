/**
 * Where `bpfleet dev` keeps a running dev fleet's record: one directory per fleet name with
 * state.json (what runs and where), the supervisor's log and the daemons' logs. Root uses
 * /run/bpfleet/dev (a tmpfs: gone on reboot, like the namespaces and pins it describes),
 * others $XDG_STATE_HOME/bpfleet/dev; BPFLEET_DEV_STATE overrides both.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { ProcRef } from '../claims.js';

export const NAME_RE = /^[a-z][a-z0-9-]{0,15}$/;

export interface DevProcess {
  name: string;
  pid: number;
  log: string;
}

export interface DevHost {
  name: string;
  netns: string;
  /** mgmt0's address:port: where the agent listens and what it registers. */
  listen: string;
  /** eth0: where the traffic goes and the module is attached. */
  dataAddress: string;
  pinRoot: string;
}

export interface DevFleetState {
  name: string;
  /** starting → ready, or failed; stopping once `down` asked. */
  phase: 'starting' | 'ready' | 'failed' | 'stopping';
  error?: string;
  /** The background process that owns the fleet (and every claim on its resources). */
  supervisor: ProcRef;
  startedAt: string;
  log: string;
  /** What `bpfleet dev env` exports. */
  env: Record<string, string>;
  services?: { address: string; control: string; etcd: string; nats: string };
  hosts: DevHost[];
  processes: DevProcess[];
}

export function stateRoot(): string {
  if (process.env.BPFLEET_DEV_STATE) return process.env.BPFLEET_DEV_STATE;
  if (process.getuid?.() === 0) return '/run/bpfleet/dev';
  return join(process.env.XDG_STATE_HOME || join(homedir(), '.local/state'), 'bpfleet/dev');
}

export function checkName(name: string): string {
  if (!NAME_RE.test(name)) throw new Error(`dev fleet name "${name}": 1-16 lowercase letters, digits and dashes, starting with a letter`);
  return name;
}

export function stateDir(name: string): string {
  return join(stateRoot(), checkName(name));
}

export function readState(name: string): DevFleetState | undefined {
  try {
    return JSON.parse(readFileSync(join(stateDir(name), 'state.json'), 'utf8')) as DevFleetState;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${join(stateDir(name), 'state.json')}: ${(err as Error).message}`);
  }
}

/** Replaces state.json atomically (write, then rename), so a reader never sees half of it. */
export function writeState(state: DevFleetState): void {
  const dir = stateDir(state.name);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `state.json.${process.pid}`);
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(tmp, join(dir, 'state.json'));
}

export function removeState(name: string): void {
  rmSync(stateDir(name), { recursive: true, force: true });
}
