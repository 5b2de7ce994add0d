/**
 * Where the CLI connects when neither --server, BPFLEET_SERVER nor a config context says:
 * the control plane's default listen address. Alone in a module without imports, so the
 * program (cli.ts) and the connection settings (connection.ts) share it without a cycle.
 */
export const DEFAULT_SERVER = '127.0.0.1:50051';
