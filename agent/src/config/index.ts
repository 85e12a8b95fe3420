/**
 * Loading the configuration directory: fde.toml (absent: not an FDE system), global.toml
 * (optional) and metadata.toml. Every failure is a ConfigError (exit 2) naming file, line, field.
 */
import { join } from "node:path";
import * as v from "valibot";
import { ConfigError } from "../errors.ts";
import { DEFAULT_GLOBAL, type FdeConfig, FdeSchema, type GlobalConfig, GlobalSchema } from "./fde.ts";
import { ConfigFileError, type ConfigIssue, issuesFromValibot } from "./issues.ts";
import { type Metadata, MetadataSchema } from "./metadata.ts";
import { parseToml, readToml, type TomlSource } from "./toml.ts";

export { BUNDLE_HEADER, type ConfigBundle, dumpBundle, parseBundle } from "./bundle.ts";
export type { FdeConfig, GlobalConfig } from "./fde.ts";
export { ConfigFileError, type ConfigIssue, formatIssue } from "./issues.ts";
export type { Metadata } from "./metadata.ts";
export * from "./providers/index.ts";
export { parseToml, readToml, type TomlSource } from "./toml.ts";

export interface LoadedConfig {
  fde?: FdeConfig;
  global: GlobalConfig;
}

/** Validate parsed TOML against a schema; throws ConfigFileError listing every problem. */
export function validate<TSchema extends v.GenericSchema>(
  schema: TSchema,
  source: TomlSource,
): v.InferOutput<TSchema> {
  const result = v.safeParse(schema, source.data, { abortEarly: false });
  if (result.success) return result.output;
  throw new ConfigFileError(issuesFromValibot(source.file, source.text, result.issues, schema));
}

export const configFiles = (configDir: string) => ({
  fde: join(configDir, "fde.toml"),
  global: join(configDir, "global.toml"),
  metadata: join(configDir, "metadata.toml"),
});

export async function loadFdeConfig(configDir: string): Promise<FdeConfig | undefined> {
  const source = await readToml(configFiles(configDir).fde);
  return source && validate(FdeSchema, source);
}

export async function loadGlobalConfig(configDir: string): Promise<GlobalConfig> {
  const source = await readToml(configFiles(configDir).global);
  return source ? validate(GlobalSchema, source) : DEFAULT_GLOBAL;
}

/** fde.toml and global.toml given as text (e.g. read out of an initrd); `where` prefixes file names. */
export function parseConfigTexts(files: { fde?: string; global?: string }, where: string): LoadedConfig {
  const global =
    files.global === undefined
      ? DEFAULT_GLOBAL
      : validate(GlobalSchema, parseToml(`${where}/global.toml`, files.global));
  const fde =
    files.fde === undefined ? undefined : validate(FdeSchema, parseToml(`${where}/fde.toml`, files.fde));
  return fde ? { fde, global } : { global };
}

export async function loadConfig(configDir: string): Promise<LoadedConfig> {
  const global = await loadGlobalConfig(configDir);
  const fde = await loadFdeConfig(configDir);
  return fde ? { fde, global } : { global };
}

/** metadata.toml, which must exist (it is written by `convert` and included in the initrd). */
export async function loadMetadata(configDir: string): Promise<Metadata> {
  const file = configFiles(configDir).metadata;
  const source = await readToml(file);
  if (!source) {
    throw new ConfigError(`${file} does not exist`, {
      hint: "it is written by 'cryptpilot-fde convert' and holds the dm-verity root hash of the rootfs",
    });
  }
  return validate(MetadataSchema, source);
}

export interface CheckedConfigDir extends Partial<LoadedConfig> {
  /** Absent when metadata.toml does not exist (fine on an image-build host). */
  metadata?: Metadata;
  issues: ConfigIssue[];
}

/** Validate every file of the directory, collecting all problems instead of stopping at the first. */
export async function checkConfigDir(configDir: string): Promise<CheckedConfigDir> {
  const files = configFiles(configDir);
  const checked: CheckedConfigDir = { issues: [] };
  const attempt = async <T>(file: string, load: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await load();
    } catch (err) {
      if (err instanceof ConfigFileError) checked.issues.push(...err.issues);
      else if (err instanceof ConfigError) checked.issues.push({ file, message: err.message });
      else throw err;
      return undefined;
    }
  };
  checked.global = await attempt(files.global, () => loadGlobalConfig(configDir));
  checked.fde = await attempt(files.fde, () => loadFdeConfig(configDir));
  const metadata = await attempt(files.metadata, async () => {
    const source = await readToml(files.metadata);
    return source && validate(MetadataSchema, source);
  });
  if (metadata) checked.metadata = metadata;
  return checked;
}
