# Hearth agent, for customers who run it in a container. Build from the repository root:
#   docker build -f docker/agent.Dockerfile -t hearth/agent .
# The image holds the archive customer IT installs on a host (scripts/pack-agent.js), unpacked in
# /opt/hearth-agent. The data dir (/var/lib/hearth-agent) holds the agent's private key: mount a
# volume there.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.base.json tsconfig.build.json README.md ./
COPY libs libs
COPY apps/agent apps/agent
COPY apps/control-plane/package.json apps/control-plane/package.json
COPY scripts/pack-agent.js scripts/pack-agent.js
COPY docker/hearth-agent.service docker/hearth-agent.service
# `npm install`, not `npm ci`: the lockfile lacks other platforms' optional binaries (npm/cli#4828),
# which `npm ci` calls missing. The lockfile's versions are still the ones installed.
RUN ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --workspace @hearth/agent --include-workspace-root \
 && npx tsc -b libs/contracts apps/agent \
 && node scripts/pack-agent.js --out /out \
 && mv /out/hearth-agent-*-linux-*/ /opt/hearth-agent

FROM node:20-bookworm-slim
ENV NODE_ENV=production
COPY --from=build /opt/hearth-agent /opt/hearth-agent
RUN mkdir -p /var/lib/hearth-agent && chown node:node /var/lib/hearth-agent
USER node
VOLUME /var/lib/hearth-agent
ENTRYPOINT ["/opt/hearth-agent/bin/hearth-agent"]
CMD ["run", "--data-dir", "/var/lib/hearth-agent"]
