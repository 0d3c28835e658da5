"""nbgrader's configuration for the recrl course (read by every `nbgrader` command run here).

solutions/<assignment>/  the instructors' source notebooks (solutions + hidden tests)
exercises/<assignment>/  what `nbgrader generate_assignment` releases to learners (`make exercises`)
submitted/<student>/<assignment>/  collected work; `make grade` autogrades it and exports grades.csv
"""

c = get_config()  # noqa: F821 -- provided by nbgrader when it loads this file

c.CourseDirectory.course_id = "recrl"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"

# Every cell of a submission gets this many seconds; an infinite loop is interrupted and
# costs its own points only: the other cells, and the other students, are still graded.
c.Execute.timeout = 60
