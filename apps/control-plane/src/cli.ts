#!/usr/bin/env node
/** `hearth`: the control plane's command line. */
import { validate as isUuid } from 'uuid';
import 'reflect-metadata';
import { Command } from 'commander';
import { ConfigError, loadConfig } from './config/config.js';
import { OrgsService } from './modules/orgs/orgs.service.js';
import { AuditService } from './platform/audit/audit.service.js';
import { createDataSource, migrate, revertLast } from './platform/database/data-source.js';
import { ENTITIES } from './platform/database/entities.js';
import { DomainError, InvalidInputError } from './platform/errors/domain-error.js';
import {
  generateNatsOperatorSecrets,
  NatsAuthority,
  renderServerConfig,
} from './platform/messaging/nats-auth.js';
import { Transactions } from './platform/tenancy/transactions.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The services the operator commands use, on a one-connection data source closed afterwards. */
async function withServices<T>(
  work: (s: { orgs: OrgsService; audit: AuditService }) => Promise<T>,
): Promise<T> {
  const config = loadConfig();
  const ds = await createDataSource(requireDatabaseUrl(config.database.url), {
    poolSize: 1,
    entities: ENTITIES,
  }).initialize();
  try {
    const tx = new Transactions(ds);
    const audit = new AuditService(tx);
    return await work({ orgs: new OrgsService(tx, audit), audit });
  } finally {
    await ds.destroy();
  }
}

// `serve` and `demo` load the server (Nest, GraphQL, every module: ~1.4 s of start-up here) when
// they run, so that `migrate` and `org create`, run by installers and scripts, start in a fraction.
const program = new Command('hearth').description('Hearth control plane').version('0.1.0');

function requireDatabaseUrl(url: string | undefined): string {
  if (!url)
    throw new ConfigError('DATABASE_URL is not set (e.g. postgres://hearth_app@127.0.0.1:5432/hearth)');
  return url;
}

program
  .command('migrate')
  .description('apply pending database migrations (uses MIGRATION_DATABASE_URL, else DATABASE_URL)')
  .option('--revert', 'revert the most recent migration instead (runs its .down.sql)')
  .action(async (opts: { revert?: boolean }) => {
    const config = loadConfig();
    const url = requireDatabaseUrl(config.database.migrationUrl);
    if (opts.revert) {
      const reverted = await revertLast(url);
      console.log(reverted ? `reverted: ${reverted}` : 'no migration to revert');
      return;
    }
    const applied = await migrate(url);
    console.log(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date');
  });

program
  .command('serve')
  .description('start the control plane (HTTP + GraphQL on PORT, NATS consumers, outbox relay)')
  .action(async () => {
    const config = loadConfig();
    requireDatabaseUrl(config.database.url);
    const { startServer } = await import('./server.js');
    await startServer(config);
  });

const org = program.command('org').description('organizations');
org
  .command('create')
  .description('create an organization and its first admin; prints the admin API token once')
  .requiredOption('--name <name>', 'organization name')
  .requiredOption('--admin-email <email>', "the first admin's email")
  .option('--json', 'print {"organizationId","adminToken"} as JSON')
  .action(async (opts: { name: string; adminEmail: string; json?: boolean }) => {
    const created = await withServices(({ orgs }) => orgs.create(opts.name, opts.adminEmail));
    if (opts.json)
      console.log(JSON.stringify({ organizationId: created.organizationId, adminToken: created.adminToken }));
    else {
      console.log(`organization: ${created.organizationId}`);
      console.log(`admin token (shown once, store it now): ${created.adminToken}`);
    }
  });

org
  .command('add-user')
  .description('add a user with a built-in role to an organization; prints their API token once')
  .requiredOption('--org <id>', 'organization id')
  .requiredOption('--email <email>', "the user's email")
  .requiredOption('--role <role>', 'owner | admin | ml_engineer | viewer | auditor | fleet_operator')
  .option('--json', 'print {"userId","token"} as JSON')
  .action(async (opts: { org: string; email: string; role: string; json?: boolean }) => {
    if (!isUuid(opts.org)) throw new InvalidInputError(`not an organization id: ${opts.org}`);
    const added = await withServices(({ orgs }) => orgs.addUser(opts.org, opts.email, opts.role));
    if (opts.json) console.log(JSON.stringify(added));
    else console.log(`user ${added.userId} (${opts.role}); token (shown once, store it now): ${added.token}`);
  });

const audit = program.command('audit').description('audit trail');
audit
  .command('verify')
  .description("check an organization's audit hash chain; exits 1 and names the first bad link if broken")
  .requiredOption('--org <id>', 'organization id')
  .action(async (opts: { org: string }) => {
    if (!isUuid(opts.org)) throw new InvalidInputError(`not an organization id: ${opts.org}`);
    const result = await withServices(({ audit }) => audit.verify(opts.org));
    if (result.ok) console.log(`OK: ${result.checked} events, chain intact`);
    else {
      console.log(
        `BROKEN at event ${result.firstBrokenSeq}: ${result.reason} (${result.checked} events verified before it)`,
      );
      process.exitCode = 1;
    }
  });

interface NatsInitFlags {
  out: string;
  port: string;
  storeDir?: string;
  resolverDir?: string;
  tlsCert?: string;
  tlsKey?: string;
}

const nats = program.command('nats').description('NATS server set-up');
nats
  .command('init')
  .description('generate operator/account keys and a nats-server config with JWT auth')
  .requiredOption('--out <dir>', 'where to write nats-server.conf and hearth-nats.env')
  .option('--port <port>', 'client port', '4222')
  .option('--store-dir <dir>', 'JetStream store dir as the server sees it (default: <out>/jetstream)')
  .option('--resolver-dir <dir>', 'JWT resolver dir as the server sees it (default: <out>/jwt)')
  .option('--tls-cert <file>', "the server's TLS certificate (PEM) as the server sees it; with --tls-key")
  .option('--tls-key <file>', 'its private key (PEM) as the server sees it; with --tls-cert')
  .action(async (opts: NatsInitFlags) => {
    if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey))
      throw new ConfigError('--tls-cert and --tls-key go together: give both, or neither');
    if (!opts.tlsCert)
      console.warn(
        'hearth: no --tls-cert/--tls-key: agents on other machines refuse a NATS server without TLS ' +
          '(unless they run with --allow-plaintext)',
      );
    const dir = resolve(opts.out);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const secrets = generateNatsOperatorSecrets();
    const authority = new NatsAuthority(secrets);
    const conf = await renderServerConfig(authority, {
      host: '0.0.0.0',
      port: Number(opts.port),
      storeDir: opts.storeDir ?? join(dir, 'jetstream'),
      resolverDir: opts.resolverDir ?? join(dir, 'jwt'),
      tls: opts.tlsCert && opts.tlsKey ? { certFile: opts.tlsCert, keyFile: opts.tlsKey } : null,
    });
    writeFileSync(join(dir, 'nats-server.conf'), conf, { mode: 0o600 });
    const env = [
      `NATS_OPERATOR_SEED=${secrets.operatorSeed}`,
      `NATS_ACCOUNT_SEED=${secrets.accountSeed}`,
      `NATS_SYSTEM_ACCOUNT_SEED=${secrets.systemAccountSeed}`,
    ].join('\n');
    writeFileSync(join(dir, 'hearth-nats.env'), `${env}\n`, { mode: 0o600 });
    console.log(
      `wrote ${join(dir, 'nats-server.conf')} and ${join(dir, 'hearth-nats.env')} (secrets: keep it private)`,
    );
  });

program
  .command('demo')
  .description(
    'run everything locally: embedded Postgres (PGlite), nats-server, control plane, one agent, a sample job',
  )
  .option('--once', 'exit after the sample job: 0 if it succeeded')
  .action(async (opts: { once?: boolean }) => {
    const { runDemo } = await import('./demo/demo.js');
    process.exitCode = await runDemo({ once: Boolean(opts.once) });
  });

program.parseAsync().catch((err: unknown) => {
  if (err instanceof ConfigError || err instanceof DomainError) console.error(`hearth: ${err.message}`);
  else console.error(err);
  process.exit(1);
});
