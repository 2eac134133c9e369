// Configuration: schema and defaults, loading from file/env/flags, mapping onto the agent.
export { type AgentArgs, FLAG_ALIASES, parseAgentArgs } from './flags.ts';
export { configHelp } from './help.ts';
export { type ConfigIssue, type LoadOptions, type Setting, loadConfig } from './load.ts';
export { toAgentOptions, toBatchOptions, toCorrelatorOptions, toExportConfig } from './agent-options.ts';
export { type ConfigShape, type StrataConfig, SCHEMA, defaultConfig, envName, leafPaths } from './schema.ts';
