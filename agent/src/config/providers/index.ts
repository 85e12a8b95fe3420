/**
 * Key provider tables (`[<volume>.encrypt.<provider>]`): the registry of every provider's table
 * schema. Each provider has one file next to this one (its normalised config type, the schema
 * accepting upstream cryptpilot's and the documented field names, and toToml) and one runtime
 * module in providers/<name>.ts; docs/key-providers.md documents the tables. Adding a provider:
 * its two files, one line in PROVIDER_TABLES and one in providers/index.ts PROVIDER_MODULES, and a
 * conformance fixture (agent/test/providers/fixtures.ts; the suite fails without one).
 *
 * Kept light: `config check` loads this to validate files, so nothing here may import a
 * provider's runtime (HTTP client, TPM, attesters): cli/startup.test.ts checks it.
 */
import * as v from "valibot";
import { describeIssue, fieldsAt } from "../issues.ts";
import { fieldPath, type ProviderTable, type Table } from "./common.ts";
import { type ExecConfig, exec } from "./exec.ts";
import { type KbsConfig, kbs } from "./kbs.ts";
import { type KmsConfig, kms } from "./kms.ts";
import { type OidcConfig, oidc } from "./oidc.ts";
import { type OtpConfig, otp } from "./otp.ts";
import { type Tpm2Config, tpm2 } from "./tpm2.ts";

export { fieldPath, type ProviderTable } from "./common.ts";
export type { ExecConfig, KbsConfig, KmsConfig, OidcConfig, OtpConfig, Tpm2Config };

export type ProviderConfig = OtpConfig | ExecConfig | KbsConfig | KmsConfig | OidcConfig | Tpm2Config;
export type ProviderType = ProviderConfig["type"];

/** Every provider's table, by table name; the order is the order shown in messages. */
export const PROVIDER_TABLES: {
  readonly [T in ProviderType]: ProviderTable<Extract<ProviderConfig, { type: T }>>;
} = { otp, exec, kbs, kms, oidc, tpm2 };

export const PROVIDER_TYPES = Object.keys(PROVIDER_TABLES) as ProviderType[];

const isProviderType = (name: string): name is ProviderType => Object.hasOwn(PROVIDER_TABLES, name);

/** The provider table as TOML data (`{ kbs: {...} }`), upstream names where upstream has them. */
export function providerToToml(c: ProviderConfig): Table {
  const table = PROVIDER_TABLES[c.type] as ProviderTable<ProviderConfig>;
  return { [c.type]: table.toToml(c) };
}

/**
 * `encrypt` table: exactly one `<provider>` sub-table. Parsed by hand around the per-provider
 * schema so that "two providers" and "unknown provider" get their own messages.
 */
export const EncryptSchema = v.pipe(
  v.record(v.string(), v.unknown()),
  v.rawTransform(({ dataset, addIssue, NEVER }): ProviderConfig => {
    const table = dataset.value;
    const names = Object.keys(table);
    if (names.length !== 1) {
      addIssue({
        message:
          names.length === 0
            ? `needs one key provider table, e.g. [<volume>.encrypt.kbs]; providers: ${PROVIDER_TYPES.join(", ")}`
            : `has ${names.length} key providers (${names.join(", ")}); exactly one is allowed`,
      });
      return NEVER;
    }
    const name = names[0]!;
    // Own keys only: "constructor" or "toString" is no provider.
    if (!isProviderType(name)) {
      addIssue({
        message: `unknown key provider '${name}'; use one of ${PROVIDER_TYPES.join(", ")}`,
        path: fieldPath(table, name),
      });
      return NEVER;
    }
    const schema: v.GenericSchema<unknown, ProviderConfig> = PROVIDER_TABLES[name].schema;
    const result = v.safeParse(schema, table[name], { abortEarly: false });
    if (!result.success) {
      for (const issue of result.issues) {
        const inner = issue.path ?? [];
        // Described here, while the original issue type (e.g. strict_object) is still known.
        const innerKeys = inner.map((item) => String(item.key));
        addIssue({
          message: describeIssue(issue, innerKeys.at(-1), fieldsAt(schema, innerKeys.slice(0, -1))),
          path: [...fieldPath(table, name), ...inner],
        });
      }
      return NEVER;
    }
    return result.output;
  }),
);
