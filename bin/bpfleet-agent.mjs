#!/usr/bin/env node
import { launch } from './launch.mjs';

await launch('bpfleet-agent', 'agent/main.ts');
