/** Shared setup for the aliyun tests: fresh credentials, an OIDC issuer and the test servers. */

import { type Issuer, makeIssuer as makeOidcIssuer } from "../../../vm-test/aliyun/issuer.ts";
import { type Material, makeMaterial } from "../../../vm-test/aliyun/material.ts";
import { AliyunWorld, type WorldOptions } from "../../../vm-test/aliyun/servers.ts";
import type { RetryPolicy } from "../../src/aliyun/http.ts";

export type { Issuer };

export const OIDC_PROVIDER_ARN = "acs:ram::1234567890:oidc-provider/TestOidcIdp";
export const ROLE_ARN = "acs:ram::1234567890:role/testoidc";
export const ISSUER = "https://oidc.test.example";
export const AUDIENCE = "cryptpilot-fde-test";
export const ECS_ROLE = "EcsKmsRole";

/** Key generation and server start; generous because other jobs may load the CPU. */
export const SETUP_TIMEOUT_MS = 60_000;

/** Small delays so fault tests stay fast; the retry logic is the same as the default. */
export const FAST_RETRY: RetryPolicy = { attempts: 3, baseDelayMs: 20, maxDelayMs: 40, timeoutMs: 1500 };

/** The issuer the test STS trusts for OIDC_PROVIDER_ARN. */
export function makeIssuer(): Promise<Issuer> {
  return makeOidcIssuer(ISSUER, AUDIENCE);
}

let material: Material | undefined;

/** Generated once per test process: RSA key generation costs about a second. */
export function testMaterial(): Material {
  material ??= makeMaterial();
  return material;
}

export async function startWorld(issuer: Issuer, extra: Partial<WorldOptions> = {}): Promise<AliyunWorld> {
  return AliyunWorld.start({
    material: testMaterial(),
    secrets: {
      "disk-key": Buffer.from("rootfs passphrase").toString("base64"),
      "oidc-key": "delta passphrase",
    },
    forbiddenSecrets: ["other-team-key"],
    oidcProvider: { arn: OIDC_PROVIDER_ARN, issuer: ISSUER, clientIds: [AUDIENCE], jwks: [issuer.jwk] },
    roles: { [ROLE_ARN]: OIDC_PROVIDER_ARN },
    ecsRoles: [ECS_ROLE],
    slowMs: 3000,
    ...extra,
  });
}
