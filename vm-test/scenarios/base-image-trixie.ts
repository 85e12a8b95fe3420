import { baseImageScenario } from "./base-image.ts";

export default baseImageScenario("trixie");
