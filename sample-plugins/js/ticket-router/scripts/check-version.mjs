// describe() reports src/index.js's VERSION; refuse to build a component whose version
// disagrees with nexus.toml or package.json.
import { readFileSync } from 'node:fs';

const read = (path) => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8');
const found = {
  'nexus.toml': read('nexus.toml').match(/^version\s*=\s*"([^"]*)"/m)?.[1],
  'package.json': JSON.parse(read('package.json')).version,
  'src/index.js': read('src/index.js').match(/^const VERSION = '([^']*)';/m)?.[1],
};
if (new Set(Object.values(found)).size !== 1 || found['nexus.toml'] === undefined) {
  console.error(`version mismatch: ${JSON.stringify(found)}`);
  process.exit(1);
}
