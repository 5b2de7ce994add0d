import { metrics, type Meter, type MeterProvider } from '@opentelemetry/api';
import { INSTRUMENTATION_SCOPE } from './spans.js';

/**
 * Instruments made once per meter provider, on first use. The OTel API hands out no-op
 * meters before startTelemetry and after shutdown (it has no proxy for metrics as it has for
 * traces), so instruments made at import time would stay no-ops forever, and instruments
 * kept across a restart of telemetry would record into a dead provider.
 */
export function instrumentsPerProvider<T>(create: (meter: Meter) => T): () => T {
  const made = new WeakMap<MeterProvider, T>();
  return () => {
    const provider = metrics.getMeterProvider();
    let instruments = made.get(provider);
    if (!instruments) {
      instruments = create(provider.getMeter(INSTRUMENTATION_SCOPE));
      made.set(provider, instruments);
    }
    return instruments;
  };
}
