/**
 * Reading a Prometheus endpoint in tests: the text exposition format as a map from
 * `name{labels}` to value, with lookups that ignore labels a test does not care about.
 */

export class Exposition {
  constructor(readonly samples: ReadonlyMap<string, number>, readonly text: string) {}

  static parse(text: string): Exposition {
    const samples = new Map<string, number>();
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const i = line.lastIndexOf(' ');
      samples.set(line.slice(0, i), Number(line.slice(i + 1)));
    }
    return new Exposition(samples, text);
  }

  get(series: string): number | undefined {
    return this.samples.get(series);
  }

  has(series: string): boolean {
    return this.samples.has(series);
  }

  /** Sum over every series of metric `name` whose labels include all of `labels`. */
  sum(name: string, labels: Record<string, string> = {}): number {
    let total = 0;
    for (const [series, value] of this.samples) {
      const open = series.indexOf('{');
      if ((open < 0 ? series : series.slice(0, open)) !== name) continue;
      const have = new Map([...(open < 0 ? '' : series.slice(open)).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
      if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) total += value;
    }
    return total;
  }
}

export async function scrape(url: string): Promise<Exposition> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  if (res.status !== 200) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return Exposition.parse(await res.text());
}
