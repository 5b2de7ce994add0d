#!/usr/bin/env node
import { launch } from './launch.mjs';

// `bpfleet dev` (a local fleet to try bpfleet against) lives in dev/, which the control
// plane's CLI must not import; dispatching here costs nothing when it is not used.
// The overview (`bpfleet --help`) lists it; `bpfleet help dev` is `bpfleet dev --help`.
if (process.argv[2] === 'help' && process.argv[3] === 'dev') process.argv.splice(2, 2, 'dev', '--help');
if (process.argv[2] === 'dev') await launch('bpfleet-dev', 'dev/dev-cli/main.ts');
else await launch('bpfleet', 'control/cli/main.ts');
