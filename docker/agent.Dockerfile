# Hearth agent, for customers who run it in a container. Build from the repository root:
#   docker build -f docker/agent.Dockerfile -t hearth/agent .
# The data dir (/var/lib/hearth-agent) holds the agent's private key: mount a volume there.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.base.json tsconfig.build.json ./
COPY libs libs
COPY apps/agent apps/agent
COPY apps/control-plane/package.json apps/control-plane/package.json
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --workspace @hearth/agent --include-workspace-root=false \
 && npx tsc -b libs/contracts apps/agent

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/libs/contracts libs/contracts
COPY --from=build /src/apps/agent apps/agent
RUN mkdir -p /var/lib/hearth-agent && chown node:node /var/lib/hearth-agent
USER node
VOLUME /var/lib/hearth-agent
ENTRYPOINT ["node", "apps/agent/bin/hearth-agent.js"]
CMD ["run", "--data-dir", "/var/lib/hearth-agent"]
