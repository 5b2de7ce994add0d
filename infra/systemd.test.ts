/**
 * The systemd units in infra/systemd/: `systemd-analyze verify` accepts them without a
 * warning, and they keep the promises docs/DEPLOY.md makes (capabilities, writable paths in
 * step with the agent's defaults, reload = SIGHUP, a stop that detaches nothing).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { agentConfigSchema } from '../agent/config.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const UNITS = ['bpfleet-agent', 'bpfleet-control'] as const;

function which(cmd: string): string | null {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

/** Directive → values (a directive may repeat), from the [Service] section. */
function serviceSection(name: string): Map<string, string[]> {
  const text = readFileSync(join(REPO, 'infra/systemd', `${name}.service`), 'utf8');
  const out = new Map<string, string[]>();
  let section = '';
  for (const line of text.split('\n')) {
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) section = header[1]!;
    const kv = /^(\w+)=(.*)$/.exec(line);
    if (kv && section === 'Service') out.set(kv[1]!, [...(out.get(kv[1]!) ?? []), kv[2]!]);
  }
  return out;
}

describe('systemd units', () => {
  const analyze = which('systemd-analyze');
  const dir = mkdtempSync(join(tmpdir(), 'bpfleet-units-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('systemd-analyze verify accepts them, with no warning', { skip: !analyze && process.env.CI !== 'true' && 'systemd-analyze not installed (Debian package systemd; infra/bootstrap.sh installs it)' }, () => {
    assert.ok(analyze, 'systemd-analyze is missing (Debian package systemd): infra/bootstrap.sh installs it');
    // verify checks that ExecStart exists: the units name the installed commands
    // (/usr/local/bin), so the copies point at this checkout's launchers instead.
    const paths = UNITS.map((u) => {
      const text = readFileSync(join(REPO, 'infra/systemd', `${u}.service`), 'utf8');
      assert.match(text, new RegExp(`^ExecStart=/usr/local/bin/${u} `, 'm'));
      const path = join(dir, `${u}.service`);
      writeFileSync(path, text.replace(`/usr/local/bin/${u} `, `${join(REPO, 'bin', `${u}.mjs`)} `));
      return path;
    });
    const r = spawnSync(analyze!, ['verify', ...paths], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'systemd-analyze verify warned');
  });

  it('the agent: the four BPF capabilities, its pin root and cache writable, stops without detaching', () => {
    const s = serviceSection('bpfleet-agent');
    const caps = ['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON', 'CAP_SYS_ADMIN'];
    assert.deepEqual(s.get('CapabilityBoundingSet')?.[0]?.split(' ').sort(), caps);
    assert.deepEqual(s.get('AmbientCapabilities')?.[0]?.split(' ').sort(), caps);
    const defaults = agentConfigSchema.parse({});
    assert.deepEqual(s.get('ReadWritePaths'), [defaults.pinRoot]);
    assert.equal(`/var/cache/${s.get('CacheDirectory')?.[0]}`, defaults.cacheDir);
    assert.equal(s.get('KillMode')?.[0], 'mixed', 'SIGTERM goes to the agent alone, which detaches nothing');
  });

  it('the control plane: no capabilities, not root', () => {
    const s = serviceSection('bpfleet-control');
    assert.deepEqual(s.get('CapabilityBoundingSet'), ['']);
    assert.deepEqual(s.get('AmbientCapabilities'), ['']);
    assert.notEqual(s.get('User')?.[0], 'root');
  });

  for (const u of UNITS) {
    it(`${u}: hardened, restarts on failure, reload is SIGHUP`, () => {
      const s = serviceSection(u);
      for (const [k, v] of [['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['ProtectHome', 'yes'], ['PrivateTmp', 'yes'], ['Restart', 'on-failure']]) {
        assert.equal(s.get(k!)?.[0], v, `${k}=${v}`);
      }
      assert.equal(s.get('ExecReload')?.[0], '/bin/kill -HUP $MAINPID');
      assert.match(s.get('ExecStart')?.[0] ?? '', new RegExp(`--config /etc/bpfleet/${u.replace('bpfleet-', '')}\\.yaml$`));
    });
  }
});
