// On its own, without imports: the CLI calls it first thing, before it knows whether it will
// need gRPC or X.509 at all (`bpfleet --help` does not).
/**
 * Drops Node's DEP0123 warning ("Setting the TLS ServerName to an IP address"), which
 * grpc-js triggers on every TLS connection to an IP address: the server's certificate is
 * still checked against that IP (its IP SAN); only the SNI extension is left out, which
 * bpfleet's servers do not use. Without this, every CLI command would print it on stderr.
 */
export function quietIpServerNameWarning(): void {
  const emit = process.emitWarning.bind(process);
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const code = typeof rest[0] === 'object' && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
    if (code === 'DEP0123') return;
    (emit as (...a: unknown[]) => void)(warning, ...rest);
  }) as typeof process.emitWarning;
}
