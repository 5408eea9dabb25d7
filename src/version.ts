/** Tally's own version, read from its package.json (not the calling app's). */
import fs from 'node:fs';

const packageJson = new URL('../package.json', import.meta.url);

export const TALLY_VERSION: string = (JSON.parse(fs.readFileSync(packageJson, 'utf8')) as { version: string }).version;
