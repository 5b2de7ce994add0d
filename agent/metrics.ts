/**
 * The agent's Prometheus metrics (served by startTelemetry's endpoint; see
 * docs/OBSERVABILITY.md). Durations are histograms in seconds, as the OTel semantic
 * conventions ask; attributes stay low-cardinality (a hook kind, a result, an error reason).
 */
import { instrumentsPerProvider } from '../common/meters.js';

export const agentMetrics = instrumentsPerProvider((meter) => ({
  applyDuration: meter.createHistogram('bpfleet.agent.apply.duration', {
    unit: 's',
    description: 'Time to handle one intent, from receipt to answer: module lookup, artifact fetch and digest check, load and verifier, swap, state report',
  }),
  loadDuration: meter.createHistogram('bpfleet.agent.load.duration', {
    unit: 's',
    description: 'Time to load a module into the kernel, the verifier included',
  }),
  swapDuration: meter.createHistogram('bpfleet.agent.swap.duration', {
    unit: 's',
    description: 'Time of the program swap: the atomic bpf_link_update, or the first attach',
  }),
  swapFailures: meter.createCounter('bpfleet.agent.swap.failures', {
    unit: '{failure}',
    description: 'Installs that left the attachment as it was, by reason (error.type: DRIFT, VERIFIER_REJECTED, ...)',
  }),
  telemetryReports: meter.createCounter('bpfleet.agent.telemetry.reports', {
    unit: '{report}',
    description: 'Telemetry reports published on NATS',
  }),
}));
