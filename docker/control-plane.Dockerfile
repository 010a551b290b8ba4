# Hearth control plane. Build from the repository root:
#   docker build -f docker/control-plane.Dockerfile -t hearth/control-plane .
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.base.json tsconfig.build.json ./
COPY libs libs
COPY apps/control-plane apps/control-plane
COPY apps/agent/package.json apps/agent/package.json
# `npm install`, not `npm ci`: the lockfile lacks other platforms' optional binaries (npm/cli#4828),
# which `npm ci` calls missing. The lockfile's versions are still the ones installed.
RUN ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund \
 && npx tsc -b libs/contracts apps/control-plane \
 && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production PORT=8080
WORKDIR /app
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/package.json package.json
COPY --from=build /src/libs/contracts libs/contracts
COPY --from=build /src/apps/control-plane apps/control-plane
COPY migrations migrations
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:'+process.env.PORT+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "apps/control-plane/bin/hearth.js"]
CMD ["serve"]
