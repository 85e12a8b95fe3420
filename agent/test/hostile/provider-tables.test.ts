/**
 * Provider tables from a hostile configuration (#17 reads fde.toml from user data before anything
 * is attested): a table named like an Object.prototype member is an unknown provider with a clear
 * ConfigFileError naming the file and line, never a TypeError and stack trace.
 */
import { expect, test } from "bun:test";
import { FdeSchema } from "../../src/config/fde.ts";
import { parseToml, validate } from "../../src/config/index.ts";
import { ConfigError } from "../../src/errors.ts";
import { bounded } from "./limits.ts";

const fde = (provider: string) => `[rootfs]
rw_overlay = "disk"

[rootfs.encrypt.${provider}]

[delta]
[delta.encrypt.otp]
`;

test("[rootfs.encrypt.<Object.prototype member>] is an unknown provider, reported with its line", async () => {
  for (const name of ["toString", "hasOwnProperty", "valueOf", "isPrototypeOf", "constructor"]) {
    const error = await bounded(
      async () => {
        try {
          validate(FdeSchema, parseToml("fde.toml", fde(name)));
        } catch (err) {
          return err;
        }
        return undefined;
      },
      { ms: 2000, mib: 100 },
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect(String((error as Error).message)).toContain("fde.toml");
  }
});
