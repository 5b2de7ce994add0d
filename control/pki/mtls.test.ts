/**
 * The PKI's certificates in real mutual TLS: a grpc-js server that requires client
 * certificates (`ServerCredentials.createSsl(ca, [...], true)`) on 127.0.0.1, and clients
 * holding certificates from this PKI, from another CA, from an external CA made with
 * openssl, expired, or none. The handler answers with the identity common/identity reads
 * from `call.getAuthContext().sslPeerCertificate`; a refused client must never reach it.
 * Then a CA rotation, step by step as documented.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { readIdentity, type IdentityResult } from '../../common/identity.js';
import { signLeaf } from './certificates.js';
import { finishRotation, initCa, issue, loadCa, rotate } from './pki.js';

const run = promisify(execFile);
const TD = 'fleet.test';
const DAY = 86_400_000;
const METHOD = '/bpfleet.test.Identity/WhoAmI';
const raw = (b: Buffer) => b;

interface Pem {
  cert: string;
  key: string;
}

interface TestServer {
  address: string;
  /** How many calls reached the handler. */
  handled: () => number;
  stop: () => void;
}

/** A grpc-js server requiring client certificates, answering WhoAmI with the caller's identity. */
async function startServer(caBundle: string, own: Pem): Promise<TestServer> {
  const server = new grpc.Server();
  let handled = 0;
  server.addService({
    whoAmI: { path: METHOD, requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
  }, {
    whoAmI: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      handled++;
      const peer = call.getAuthContext()?.sslPeerCertificate;
      const result: IdentityResult = peer ? readIdentity(peer, TD) : { identity: null, reason: 'no peer certificate' };
      callback(null, Buffer.from(JSON.stringify(result)));
    },
  });
  const creds = grpc.ServerCredentials.createSsl(Buffer.from(caBundle), [{ private_key: Buffer.from(own.key), cert_chain: Buffer.from(own.cert) }], true);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))));
  return { address: `127.0.0.1:${port}`, handled: () => handled, stop: () => server.forceShutdown() };
}

/** One WhoAmI call: the identity the server read, or the gRPC status code of the failure. */
async function whoAmI(address: string, caBundle: string, own: Pem | null): Promise<IdentityResult | { code: grpc.status; details: string }> {
  const creds = own
    ? grpc.credentials.createSsl(Buffer.from(caBundle), Buffer.from(own.key), Buffer.from(own.cert))
    : grpc.credentials.createSsl(Buffer.from(caBundle));
  const client = new grpc.Client(address, creds);
  try {
    return await new Promise((resolve) => {
      client.makeUnaryRequest(METHOD, raw, raw, Buffer.alloc(0), { deadline: Date.now() + 10_000 }, (err, res) => {
        resolve(err ? { code: err.code, details: err.details } : JSON.parse(res!.toString()) as IdentityResult);
      });
    });
  } finally {
    client.close();
  }
}

const read = (dir: string, name: string): Pem => ({ cert: readFileSync(join(dir, `${name}.crt`), 'utf8'), key: readFileSync(join(dir, `${name}.key`), 'utf8') });

/** Refused before any handler ran: the TLS handshake failed, which gRPC reports as UNAVAILABLE. */
function assertRefused(r: Awaited<ReturnType<typeof whoAmI>>, server: TestServer, handledBefore: number): void {
  assert.ok('code' in r, `expected a refusal, got ${JSON.stringify(r)}`);
  assert.ok([grpc.status.UNAVAILABLE, grpc.status.UNAUTHENTICATED].includes(r.code), `code ${grpc.status[r.code]}: ${r.details}`);
  assert.equal(server.handled(), handledBefore, 'no handler ran');
}

describe('mutual TLS with the fleet PKI (grpc-js)', () => {
  const root = mkdtempSync(join(tmpdir(), 'bpfleet-mtls-'));
  const dir = join(root, 'pki');
  let bundle: string;
  let server: TestServer;

  before(async () => {
    await initCa(dir, { trustDomain: TD });
    await issue(dir, { kind: 'control', name: 'control' });
    await issue(dir, { kind: 'host', name: 'h1' });
    await issue(dir, { kind: 'user', name: 'alice', roles: ['viewer', 'publisher'] });
    bundle = readFileSync(join(dir, 'ca.crt'), 'utf8');
    server = await startServer(bundle, read(dir, 'control'));
  });
  after(() => {
    server?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it('a host certificate completes a call, and the server reads the host identity from it', async () => {
    assert.deepEqual(await whoAmI(server.address, bundle, read(dir, 'h1')), {
      identity: { kind: 'host', name: 'h1', roles: [], trustDomain: TD, spiffeId: 'spiffe://fleet.test/bpfleet/host/h1' },
    });
  });

  it('a user certificate: the server reads the user and its roles', async () => {
    const r = await whoAmI(server.address, bundle, read(dir, 'alice'));
    assert.deepEqual('identity' in r && r.identity, { kind: 'user', name: 'alice', roles: ['viewer', 'publisher'], trustDomain: TD, spiffeId: 'spiffe://fleet.test/bpfleet/user/alice/viewer/publisher' });
  });

  it('no client certificate: refused', async () => {
    const n = server.handled();
    assertRefused(await whoAmI(server.address, bundle, null), server, n);
  });

  it('a client certificate from another CA (same trust domain, same name): refused', async () => {
    const other = join(root, 'other');
    await initCa(other, { trustDomain: TD });
    await issue(other, { kind: 'host', name: 'h1' });
    const n = server.handled();
    assertRefused(await whoAmI(server.address, bundle, read(other, 'h1')), server, n);
  });

  it('an expired client certificate from the fleet CA: refused', async () => {
    const { ca } = await loadCa(dir);
    const expired = await signLeaf(ca, { kind: 'host', name: 'h1' }, { notBefore: new Date(Date.now() - 3 * DAY), notAfter: new Date(Date.now() - DAY) });
    const n = server.handled();
    assertRefused(await whoAmI(server.address, bundle, { cert: expired.certPem, key: expired.keyPem }), server, n);
  });

  it('a SPIFFE-style client certificate from an external CA (made by openssl) works once the server trusts that CA', async () => {
    const ext = join(root, 'external');
    mkdirSync(ext);
    const openssl = (...args: string[]) => run('openssl', args, { cwd: ext });
    const p256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    await openssl('req', '-x509', ...p256, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=External CA', '-days', '2',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    await openssl('req', '-new', ...p256, '-keyout', 'bot.key', '-out', 'bot.csr', '-subj', '/CN=ignored/OU=admin');
    writeFileSync(join(ext, 'leaf.cnf'), [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth,clientAuth',
      'subjectAltName=DNS:bot.example,URI:spiffe://fleet.test/bpfleet/user/release-bot/operator/publisher',
    ].join('\n'));
    await openssl('x509', '-req', '-in', 'bot.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', '0x1001', '-days', '1', '-extfile', 'leaf.cnf', '-out', 'bot.crt');
    const bot = read(ext, 'bot');
    const n = server.handled();
    assertRefused(await whoAmI(server.address, bundle, bot), server, n);

    const both = await startServer(bundle + readFileSync(join(ext, 'ca.crt'), 'utf8'), read(dir, 'control'));
    try {
      const r = await whoAmI(both.address, bundle, bot);
      assert.deepEqual('identity' in r && r.identity, {
        kind: 'user', name: 'release-bot', roles: ['operator', 'publisher'], trustDomain: TD,
        spiffeId: 'spiffe://fleet.test/bpfleet/user/release-bot/operator/publisher',
      });
    } finally {
      both.stop();
    }
  });

  it('the client refuses a server whose certificate is not from the fleet CA', async () => {
    const other = join(root, 'other');
    const impostor = await startServer(bundle, read(other, 'h1'));
    try {
      assertRefused(await whoAmI(impostor.address, bundle, read(dir, 'h1')), impostor, 0);
    } finally {
      impostor.stop();
    }
  });
});

describe('CA rotation without downtime (grpc-js)', () => {
  const root = mkdtempSync(join(tmpdir(), 'bpfleet-mtls-rotate-'));
  const dir = join(root, 'pki');
  const old: Record<string, Pem> = {};
  let oldBundle: string;
  let bundle: string;
  const servers: TestServer[] = [];
  const serve = async (b: string, own: Pem) => {
    const s = await startServer(b, own);
    servers.push(s);
    return s;
  };
  const name = (r: Awaited<ReturnType<typeof whoAmI>>) => ('identity' in r ? r.identity?.name : `refused: ${grpc.status[r.code]} ${r.details}`);

  before(async () => {
    await initCa(dir, { trustDomain: TD });
    for (const n of ['control', 'h1']) await issue(dir, { kind: n === 'control' ? 'control' : 'host', name: n });
    oldBundle = readFileSync(join(dir, 'ca.crt'), 'utf8');
    for (const n of ['control', 'h1']) old[n] = read(dir, n);
    await rotate(dir);
    bundle = readFileSync(join(dir, 'ca.crt'), 'utf8');
  });
  after(() => {
    for (const s of servers) s.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it('step 1, the bundle is out: a server on its old certificate accepts old and new client certificates', async () => {
    const s = await serve(bundle, old.control!);
    assert.equal(name(await whoAmI(s.address, bundle, old.h1!)), 'h1');
    assert.equal(name(await whoAmI(s.address, bundle, read(dir, 'h1'))), 'h1');
  });

  it('step 2, new certificates: a server on its new certificate accepts old and new client certificates', async () => {
    const s = await serve(bundle, read(dir, 'control'));
    assert.equal(name(await whoAmI(s.address, bundle, old.h1!)), 'h1');
    assert.equal(name(await whoAmI(s.address, bundle, read(dir, 'h1'))), 'h1');
  });

  it('why the bundle goes first: a client that trusts only the old CA refuses a server on a new certificate', async () => {
    const s = await serve(bundle, read(dir, 'control'));
    assertRefused(await whoAmI(s.address, oldBundle, old.h1!), s, 0);
  });

  it('step 3, finished: the old CA is no longer trusted, new certificates keep working', async () => {
    await finishRotation(dir);
    const finished = readFileSync(join(dir, 'ca.crt'), 'utf8');
    const s = await serve(finished, read(dir, 'control'));
    assert.equal(name(await whoAmI(s.address, finished, read(dir, 'h1'))), 'h1');
    assertRefused(await whoAmI(s.address, finished, old.h1!), s, 1);
  });
});
