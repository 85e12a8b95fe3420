import { notYetAvailable } from "./not-yet.ts";

export default notYetAvailable(["config", "check"], "Validate the configuration");
