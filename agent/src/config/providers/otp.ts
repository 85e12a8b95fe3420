/** otp: a fresh random key per call. Upstream: `{}`. */
import * as v from "valibot";
import type { ProviderTable } from "./common.ts";

export interface OtpConfig {
  type: "otp";
}

export const otp: ProviderTable<OtpConfig> = {
  type: "otp",
  schema: v.pipe(
    v.strictObject({}),
    v.transform((): OtpConfig => ({ type: "otp" })),
  ),
  toToml: () => ({}),
};
