// The root check of the zx scripts, which run before the TypeScript is built (lib/requirements.ts
// has the same check for the CLI): one line saying why root is needed, then exit 1.
export function exitUnlessRoot(say, why, hint) {
  if (process.getuid() === 0) return;
  say(`run as root (${why})${hint ? `: ${hint}` : ''}`);
  process.exit(1);
}
