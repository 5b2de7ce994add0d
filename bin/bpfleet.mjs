#!/usr/bin/env node
import { launch } from './launch.mjs';

await launch('bpfleet', 'control/cli/main.ts');
