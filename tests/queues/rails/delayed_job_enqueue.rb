# Enqueue one job of each kind through ActiveJob's delayed_job adapter, then print their
# job ids as JSON: {"blocking": ID, "fails": ID, ...}. Argument: the flag file BlockingJob waits for.
require_relative "delayed_job_app"

flag = ARGV.fetch(0)
jobs = {
  "blocking" => BlockingJob.perform_later(flag),
  "fails" => FailingJob.set(priority: 3).perform_later,
  "flaky" => FlakyJob.perform_later,
  "patient" => PatientJob.perform_later,
  "scheduled" => TrickyJob.set(wait: 3600).perform_later,
  "tricky" => TrickyJob.perform_later(
    { "job_id" => "decoy-1" },
    "line one\n  job_id: decoy-2\n",
    "job_id: decoy-3",
    "'quoted' \"double\" \\ 100% _under_",
  ),
}
puts JSON.generate(jobs.transform_values(&:job_id))
