// Serve a supergraph through Hive Gateway's runtime (the engine of @graphql-hive/gateway,
// without its CLI's 500 MB of plugins), passing the caller's token on to the subgraphs.
// Usage: node gateway.mjs supergraph.graphql port   (prints "listening" when it accepts)
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createGatewayRuntime } from "@graphql-hive/gateway-runtime";

const [file, port] = process.argv.slice(2);
const gateway = createGatewayRuntime({
  supergraph: readFileSync(file, "utf8"),
  maskedErrors: false, // the subgraphs' errors reach the client as the hub sends them
  propagateHeaders: {
    fromClientToSubgraphs: ({ request }) => ({
      authorization: request.headers.get("authorization") ?? undefined,
    }),
  },
});
createServer(gateway).listen(Number(port), "127.0.0.1", () => console.log("listening"));
