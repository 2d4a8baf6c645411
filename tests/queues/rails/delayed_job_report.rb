# Enqueue the jobs tracked with Immortus::Tracked (IMMORTUS_JOURNAL_URL names the journal's
# Redis), then print their job ids as JSON: {"report": ID, "fails": ID}. Argument: the flag
# file ReportJob waits for.
require_relative "delayed_job_app"

flag = ARGV.fetch(0)
jobs = { "report" => ReportJob.perform_later(flag), "fails" => TrackedFailingJob.perform_later }
puts JSON.generate(jobs.transform_values(&:job_id))
