// Starts one of bpfleet's commands. In a checkout (the TypeScript sources are beside this file)
// it always runs the sources through tsx, so what runs is what was just edited, never a stale
// dist/. The installed package has no sources: it runs dist/, built by `npm run build` before
// `npm pack`, on plain Node.
import { existsSync } from 'node:fs';

/** Runs command `name` (dist/<name>.js), or its TypeScript entry `source` (repo-relative) when present. */
export async function launch(name, source) {
  const root = new URL('../', import.meta.url);
  const sourceUrl = new URL(source, root);
  if (existsSync(sourceUrl)) {
    const { register } = await import('tsx/esm/api');
    register();
    await import(sourceUrl.href);
  } else {
    await import(new URL(`dist/${name}.js`, root).href);
  }
}
