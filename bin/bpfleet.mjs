#!/usr/bin/env node
// Runs the TypeScript CLI through tsx's loader, so the installed bin needs no build step.
import { register } from 'tsx/esm/api';

register();
// `bpfleet dev` (a local fleet to try bpfleet against) lives in dev/, which the control
// plane's CLI must not import; dispatching here costs nothing when it is not used.
if (process.argv[2] === 'dev') await import('../dev/dev-cli/main.ts');
else await import('../control/cli/main.ts');
