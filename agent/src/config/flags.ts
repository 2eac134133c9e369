// Command-line flags of `strata agent`: --config F, --set section.key=value (repeatable) and the
// short flags kept from before the config file existed, each an alias of one key. Flags are
// applied in command-line order, so the last one of a key wins.
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { EXIT_USAGE, STRATA_ERR_USAGE, StrataError } from '../errors.ts';
import type { Setting } from './load.ts';

/** short flag -> config key */
export const FLAG_ALIASES: Readonly<Record<string, string>> = {
  'pods-file': 'discovery.podsFile',
  'node-name': 'node.name',
  'node-netns': 'node.netns',
  iface: 'node.interfaces',
  'otlp-endpoint': 'export.otlp.endpoint',
  'traces-dir': 'export.files.dir',
  'metrics-port': 'metrics.port',
  'metrics-host': 'metrics.host',
};

export interface AgentArgs {
  /** --config F */
  configFile?: string;
  /** flag settings, in command-line order */
  settings: Setting[];
  help: boolean;
  /** --print-config: print the effective configuration and exit */
  printConfig: boolean;
}

export function parseAgentArgs(argv: string[]): AgentArgs {
  const options: ParseArgsOptionsConfig = {
    config: { type: 'string' },
    set: { type: 'string', multiple: true },
    help: { type: 'boolean', short: 'h' },
    'print-config': { type: 'boolean' },
  };
  for (const f of Object.keys(FLAG_ALIASES)) options[f] = { type: 'string', multiple: f === 'iface' };
  let tokens: ReturnType<typeof parseArgs>['tokens'];
  try {
    tokens = parseArgs({ args: argv, options, strict: true, allowPositionals: false, tokens: true }).tokens;
  } catch (e) {
    throw new StrataError(STRATA_ERR_USAGE, `${(e as Error).message} (see strata agent --help)`, EXIT_USAGE);
  }
  const out: AgentArgs = { settings: [], help: false, printConfig: false };
  const ifaces: string[] = [];
  let ifaceAt = -1;
  for (const t of tokens ?? []) {
    if (t.kind !== 'option') continue;
    const value = t.value ?? '';
    if (t.name === 'help') out.help = true;
    else if (t.name === 'print-config') out.printConfig = true;
    else if (t.name === 'config') out.configFile = value;
    else if (t.name === 'set') {
      const eq = value.indexOf('=');
      if (eq <= 0) throw new StrataError(STRATA_ERR_USAGE, `--set ${value}: expected --set section.key=value`, EXIT_USAGE);
      out.settings.push({ key: value.slice(0, eq).trim(), value: value.slice(eq + 1), source: `--set ${value.slice(0, eq).trim()}` });
    } else if (t.name === 'iface') {
      // repeatable: every --iface together is one list, placed where the last one was given
      ifaces.push(value);
      if (ifaceAt >= 0) out.settings.splice(ifaceAt, 1);
      ifaceAt = out.settings.length;
      out.settings.push({ key: FLAG_ALIASES.iface as string, value: [...ifaces], source: '--iface' });
    } else {
      const key = FLAG_ALIASES[t.name];
      if (key) out.settings.push({ key, value, source: `--${t.name}` });
    }
  }
  return out;
}
