/**
 * The kbs provider's retry defaults, now defined with the retry loop in net/retry.ts (which
 * loads no HTTP client, so `config check` can take its defaults from there). Kept so existing
 * imports resolve; new code imports net/retry.ts.
 */
export { KBS_REQUEST_TIMEOUT_MS, KBS_RETRY as DEFAULT_RETRY } from "../net/retry.ts";
