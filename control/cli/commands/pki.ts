/**
 * `bpfleet pki init|issue|rotate|show`: the fleet PKI from the command line (control/pki
 * does the work; this file parses flags and prints what was written where).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Argument, Option, type Command } from 'commander';
import { BpfleetError } from '../../../common/errors.js';
import { IDENTITY_KINDS, ROLES, type IdentityKind, type Role } from '../../../common/identity.js';
import { DEFAULT_SERVER_SANS, describeCertificate, type CertificateSummary } from '../../pki/certificates.js';
import { CA_CERT_FILE, finishRotation, initCa, issue, rotate, type LeafFiles } from '../../pki/pki.js';
import { outputOption, print, type Output } from '../output.js';

const HOUR_MS = 3600_000;

/** "365d" or "12h" in milliseconds; throws INVALID_ARGUMENT naming --validity. */
export function parseValidity(text: string): number {
  const m = /^(\d{1,6})([dh])$/.exec(text);
  if (!m) throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', `--validity "${text}": a number of days or hours, e.g. 365d or 12h`);
  return Number(m[1]) * (m[2] === 'd' ? 24 * HOUR_MS : HOUR_MS);
}

/** Repeatable and comma-separated: `--role viewer --role operator` or `--role viewer,operator`. */
const collect = (value: string, previous: string[]) => [...previous, ...value.split(',').map((v) => v.trim()).filter(Boolean)];

// An empty BPFLEET_PKI_DIR counts as unset, as shells make it easy to export one by accident.
const dirOption = () => new Option('--dir <path>', 'PKI directory (env BPFLEET_PKI_DIR)').default(process.env.BPFLEET_PKI_DIR || './pki');

/** C0 and C1 control characters as \xNN: certificate fields are the issuer's text, not ours. */
const inert = (text: string) => text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);

const leafLine = (l: LeafFiles) => `  ${l.spiffeId}\n    certificate: ${l.certPath}\n    key:         ${l.keyPath} (mode 0600)`;

export function registerPkiCommands(program: Command): void {
  const pki = program.command('pki')
    .description('fleet PKI for mutual TLS: the CA, and certificates for the control plane, agents and users')
    .addHelpText('after', `
Examples:
  bpfleet pki init --trust-domain fleet.example.com        # ./pki/ca.crt and ./pki/ca.key
  bpfleet pki issue control control --san 10.0.0.1         # control plane: TLS server and client
  bpfleet pki issue host h1 --san 10.0.1.17                # an agent; the name is its host name
  bpfleet pki issue user alice --role viewer,operator      # a person or CI robot, with roles
  bpfleet pki show pki/h1.crt
  bpfleet pki rotate                                       # new CA; ca.crt trusts old and new
  bpfleet pki rotate --finish                              # once every holder has its new files

The identity is the certificate's URI SAN spiffe://<trust-domain>/bpfleet/<kind>/<name>
(users: .../user/<name>/<role>...); see docs/SECURITY.md.`);

  pki.command('init')
    .description('create the fleet CA: <dir>/ca.crt (the trust bundle) and <dir>/ca.key (mode 0600)')
    .requiredOption('--trust-domain <name>', 'SPIFFE trust domain, e.g. fleet.example.com (lowercase letters, digits, ".", "-", "_")')
    .option('--validity <duration>', 'how long the CA is valid: days (d) or hours (h)', '1826d')
    .option('--force', 'replace an existing CA (every certificate it signed stops verifying)')
    .addOption(dirOption())
    .action(async (opts: { trustDomain: string; validity: string; force?: boolean; dir: string }) => {
      const ca = await initCa(opts.dir, { trustDomain: opts.trustDomain, validityMs: parseValidity(opts.validity), force: opts.force });
      process.stdout.write(`created the fleet CA "${ca.subject}" for trust domain ${ca.trustDomain}, valid until ${ca.notAfter.toISOString()}
  trust bundle: ${ca.certPath} (install on every server and client)
  CA key:       ${ca.keyPath} (mode 0600; keep it off the fleet)
next: bpfleet pki issue control <name> --dir ${opts.dir}\n`);
    });

  pki.command('issue')
    .description('issue <dir>/<name>.crt and <dir>/<name>.key (mode 0600), signed by the fleet CA')
    .addArgument(new Argument('<kind>', 'control (the control plane), host (an agent) or user (a person or robot)').choices(IDENTITY_KINDS))
    .argument('<name>', 'lowercase letters, digits and inner dashes; for a host, its host name')
    .addOption(new Option('--role <role>', `user only, repeatable or comma-separated: ${ROLES.join(', ')} (admin implies all)`).argParser(collect).default([], 'none'))
    .addOption(new Option('--san <address>', `control and host only, repeatable or comma-separated: an IP address or DNS name it serves on, besides ${DEFAULT_SERVER_SANS.join(', ')}`).argParser(collect).default([], 'none'))
    .option('--validity <duration>', 'days (d) or hours (h); must end before the CA does', '365d')
    .option('--force', 'replace an existing certificate and key of that name (renewal)')
    .addOption(dirOption())
    .addHelpText('after', `
Examples:
  bpfleet pki issue host h1 --san 10.0.1.17,h1.dc1.example.com
  bpfleet pki issue user release-bot --role publisher,operator --validity 90d
  bpfleet pki issue host h1 --force                       # renew h1's certificate and key`)
    .action(async (kind: IdentityKind, name: string, opts: { role: string[]; san: string[]; validity: string; force?: boolean; dir: string }) => {
      const leaf = await issue(opts.dir, { kind, name, roles: opts.role as Role[], sans: opts.san, validityMs: parseValidity(opts.validity), force: opts.force });
      process.stdout.write(`issued ${leaf.kind} ${leaf.name}${leaf.roles.length ? ` (roles ${leaf.roles.join(', ')})` : ''}, valid until ${leaf.notAfter.toISOString()}\n${leafLine(leaf)}\n`);
    });

  pki.command('rotate')
    .description('rotate the CA: a new CA, ca.crt trusting old and new, every certificate in <dir> re-issued')
    .option('--finish', 'end the rotation: ca.crt trusts only the new CA')
    .option('--validity <duration>', 'how long the new CA is valid (default: as long as the current one)')
    .addOption(dirOption())
    .addHelpText('after', `
Without downtime:
  1. bpfleet pki rotate           # new CA; <dir>/ca.crt now trusts the old and the new CA
  2. install the new ca.crt on every server and client (old certificates still verify)
  3. install each holder's new certificate and key (old and new work side by side)
  4. bpfleet pki rotate --finish  # ca.crt trusts only the new CA; install it everywhere
After each of 2, 3 and 4 restart every server that holds the files, one at a time: etcd
members, NATS servers, control-plane replicas, agents (each reads its TLS files at start).
docs/SECURITY.md, "Rotating the CA".`)
    .action(async (opts: { finish?: boolean; validity?: string; dir: string }) => {
      if (opts.finish) {
        const { dropped } = await finishRotation(opts.dir);
        process.stdout.write(dropped.length
          ? `${join(opts.dir, CA_CERT_FILE)} now trusts only the current CA; no longer trusted: ${dropped.map((d) => `"${d}"`).join(', ')}\nnext: install it on every server and client, and restart each\n`
          : `no rotation in progress: ${join(opts.dir, CA_CERT_FILE)} already trusts one CA\n`);
        return;
      }
      const r = await rotate(opts.dir, opts.validity ? { validityMs: parseValidity(opts.validity) } : {});
      process.stdout.write(`new CA "${r.ca.subject}", valid until ${r.ca.notAfter.toISOString()}
  trust bundle: ${r.ca.certPath} (trusts the new CA and the previous one, "${r.previous}")
re-issued ${r.reissued.length} certificate(s) with new keys:
${r.reissued.map(leafLine).join('\n')}
next: install ${r.ca.certPath} everywhere and restart each server, then each new certificate and key and restart each again, then: bpfleet pki rotate --finish --dir ${opts.dir}\n`);
    });

  pki.command('show')
    .description('show a certificate: the bpfleet identity and roles it carries, its SANs and validity')
    .argument('<cert>', 'PEM certificate file, e.g. pki/h1.crt')
    .option('--trust-domain <name>', "read the identity only if it is in this trust domain (default: any, for display)")
    .addOption(outputOption())
    .action(async (path: string, opts: { trustDomain?: string; output: Output }) => {
      const text = await readFile(path, 'utf8').catch((err: Error) => {
        throw new BpfleetError('INVALID_ARGUMENT', 'USAGE', `cannot read ${path}: ${err.message}`);
      });
      const s = describeCertificate(text, opts.trustDomain ?? null);
      print(opts.output, s, () => describe(s));
    });
}

function describe(s: CertificateSummary): string {
  const id = s.identity;
  const sans = [...s.sans.uri.map((v) => `URI:${v}`), ...s.sans.dns.map((v) => `DNS:${v}`), ...s.sans.ip.map((v) => `IP:${v}`), ...s.sans.email.map((v) => `email:${v}`)];
  return [
    `identity:     ${id ? `${id.kind} ${id.name}` : `none (${s.noIdentityReason})`}`,
    ...(id ? [`roles:        ${id.roles.join(', ') || '-'}`, `trust domain: ${id.trustDomain}`] : []),
    `subject:      ${s.subject}`,
    `issuer:       ${s.issuer}`,
    `validity:     ${s.notBefore} to ${s.notAfter}${s.expired ? ' (EXPIRED)' : ''}`,
    `SANs:         ${sans.join(', ') || '-'}`,
    `usage:        ${s.isCa ? 'CA' : s.extendedKeyUsages.join(', ') || '-'}`,
    `serial:       ${s.serialNumber}`,
    `sha256:       ${s.fingerprintSha256}`,
  ].map(inert).join('\n');
}
