#!/usr/bin/env node
import { launch } from './launch.mjs';

await launch('bpfleet-control', 'control/main.ts');
