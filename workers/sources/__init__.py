"""Where a worker takes its checks from: a site's queue on the broker, behind one small
interface (`QueueSource`): take up to n, settle what ran, give back what did not."""
