# The Rails side of immortus's Delayed::Job interop tests: an ActiveJob application whose queue
# adapter is Delayed::Job, on the database named by DATABASE_URL (sqlite3:PATH or
# postgresql://...). Required by delayed_job_enqueue.rb and delayed_job_work.rb; uses only
# Debian's packages (ruby-activejob, ruby-delayed-job-active-record, ruby-sqlite3, ruby-pg).
require "json"
require "logger"
require "active_record"
require "active_job"
require "delayed_job"
require "delayed_job_active_record"
require_relative "immortus_tracked"

# Like Rails' generated database.yml, wait up to 5 s for an SQLite file another connection is
# reading (the Python strategy polls it while a worker reserves a job); PostgreSQL ignores it.
ActiveRecord::Base.establish_connection(url: ENV.fetch("DATABASE_URL"), timeout: 5000)
ActiveRecord::Base.logger = nil
ActiveJob::Base.queue_adapter = :delayed_job
ActiveJob::Base.logger = Logger.new(nil)
Delayed::Worker.logger = Logger.new(nil)
Delayed::Worker.destroy_failed_jobs = false # keep failed jobs, with failed_at set

# The table as Delayed::Job's generator migration creates it.
unless ActiveRecord::Base.connection.table_exists?(:delayed_jobs)
  ActiveRecord::Schema.verbose = false
  ActiveRecord::Schema.define do
    create_table :delayed_jobs do |table|
      table.integer :priority, default: 0, null: false
      table.integer :attempts, default: 0, null: false
      table.text :handler, null: false
      table.text :last_error
      table.datetime :run_at
      table.datetime :locked_at
      table.datetime :failed_at
      table.string :locked_by
      table.string :queue
      table.timestamps null: true
    end
    add_index :delayed_jobs, [:priority, :run_at], name: "delayed_jobs_priority"
  end
end

# Runs until the file its argument names exists, so that a test sees it "started".
class BlockingJob < ActiveJob::Base
  queue_as :blocking

  def perform(flag)
    deadline = Time.now + 120
    sleep 0.02 until File.exist?(flag) || Time.now > deadline
    raise "the flag #{flag} never appeared" unless File.exist?(flag)
  end
end

# Always raises; with Delayed::Worker.max_attempts = 1 it fails for good at once.
class FailingJob < ActiveJob::Base
  queue_as :fails

  def perform
    raise ArgumentError, "boom at 60%\nthe message's second line"
  end
end

# Raises, and Delayed::Job reschedules it (attempts += 1, run_at in the future).
class FlakyJob < ActiveJob::Base
  queue_as :flaky

  def perform
    raise "first attempt fails"
  end
end

# Raises, and ActiveJob's retry_on re-enqueues it an hour later (a new row, executions: 1).
class PatientJob < ActiveJob::Base
  queue_as :patient
  retry_on StandardError, wait: 3600, attempts: 3

  def perform
    raise "not yet"
  end
end

# Arguments that look like a handler's job_id line, to mislead a careless parser.
class TrickyJob < ActiveJob::Base
  queue_as :tricky

  def perform(*arguments); end
end

# Reports progress through Immortus::Tracked (the docs' exact mode), then waits for the flag.
class ReportJob < ActiveJob::Base
  include Immortus::Tracked
  queue_as :report

  def perform(flag)
    immortus_progress(1, 4, "reading")
    immortus_progress(2, 4, "half way")
    BlockingJob.new.perform(flag)
    immortus_progress(4, 4)
  end
end

# Always raises, tracked exactly; with Delayed::Worker.max_attempts = 1 it fails for good.
class TrackedFailingJob < ActiveJob::Base
  include Immortus::Tracked
  queue_as :tracked_fails

  def perform
    raise ArgumentError, "tracked boom"
  end
end
