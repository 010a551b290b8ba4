import { allows } from '../../platform/access/ability.js';
import { Requires } from '../../platform/access/policy.decorator.js';
import { Inject } from '@nestjs/common';
import {
  Args,
  Context,
  ID,
  Int,
  Mutation,
  Parent,
  Query,
  ResolveField,
  Resolver,
  Subscription,
} from '@nestjs/graphql';
import { CurrentPrincipal } from '../../platform/auth/principal.decorator.js';
import type { Principal } from '../../platform/auth/principal.js';
import { AgentModel } from '../fleet/agent.model.js';
import { FleetService } from '../fleet/fleet.service.js';
import { JobConnection, JobFilter, JobModel, SubmitJobInput } from './job.model.js';
import { JobsService } from './jobs.service.js';
import { JobWatcher } from './job-watcher.js';

@Resolver(() => JobModel)
export class JobsResolver {
  constructor(
    @Inject(JobsService) private readonly jobsService: JobsService,
    @Inject(FleetService) private readonly fleet: FleetService,
    @Inject(JobWatcher) private readonly watcher: JobWatcher,
  ) {}

  @Mutation(() => JobModel)
  @Requires('jobs:submit')
  submitJob(@CurrentPrincipal() p: Principal, @Args('input') input: SubmitJobInput): Promise<JobModel> {
    return this.jobsService.submit(p, input);
  }

  @Mutation(() => JobModel)
  @Requires('jobs:cancel')
  cancelJob(@CurrentPrincipal() p: Principal, @Args('id', { type: () => ID }) id: string): Promise<JobModel> {
    return this.jobsService.cancel(p, id);
  }

  @Query(() => JobModel)
  @Requires('jobs:read')
  job(@CurrentPrincipal() p: Principal, @Args('id', { type: () => ID }) id: string): Promise<JobModel> {
    return this.jobsService.get(p, id);
  }

  @Query(() => JobConnection)
  @Requires('jobs:read')
  jobs(
    @CurrentPrincipal() p: Principal,
    @Args('first', { type: () => Int, nullable: true, defaultValue: 50 }) first: number,
    @Args('after', { type: () => String, nullable: true }) after: string | null,
    // Optional, not `| null`: the declared type must be the class for the ValidationPipe to run.
    @Args('filter', { type: () => JobFilter, nullable: true }) filter?: JobFilter,
  ): Promise<JobConnection> {
    return this.jobsService.list(p, first, after, filter ?? null);
  }

  @Subscription(() => JobModel, { description: 'The job now, then each time it changes.' })
  @Requires('jobs:read')
  jobUpdated(@CurrentPrincipal() p: Principal, @Args('id', { type: () => ID }) id: string) {
    return this.watcher.watch(p, id);
  }

  @ResolveField(() => AgentModel, { nullable: true })
  async agent(
    @CurrentPrincipal() p: Principal,
    @Parent() job: JobModel,
    @Context() ctx: { agents?: Map<string, Promise<AgentModel | null>> },
  ): Promise<AgentModel | null> {
    // Field-level policy: the agent is fleet information; callers without agents:read see null.
    if (!job.agent || !allows(p.ability, 'agents:read')) return null;
    // A page of jobs usually names a few agents: one lookup per distinct agent per request.
    const id = job.agent.id;
    ctx.agents ??= new Map();
    if (!ctx.agents.has(id))
      ctx.agents.set(
        id,
        this.fleet.getAgents(p, [id]).then((found) => found.get(id) ?? null),
      );
    return ctx.agents.get(id)!;
  }
}
