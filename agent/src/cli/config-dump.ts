import { notYetAvailable } from "./not-yet.ts";

export default notYetAvailable(["config", "dump"], "Print the effective FDE configuration as TOML");
